"""Progress reporting (a Rich display for people, nothing for --quiet/--json) and cooperative cancellation.

The hub clients report bytes through callbacks that end up in `FileBar.advance`; that is also where a cancelled run
(Ctrl-C) stops a transfer: `advance` raises DownloadCancelled, a BaseException so that the clients' retry loops,
which catch Exception, let it through. The partial file stays on disk and the next run resumes it."""

from __future__ import annotations

import threading
from typing import Any


NAME_WIDTH = 34  # file names are cut from the left: the shard number at the end is what tells them apart


class DownloadCancelled(BaseException):
    """Raised inside a transfer when the run was cancelled; never shown to the user (Ctrl-C exits 130)."""


class FileBar:
    """Progress of one file: bytes fetched (deltas may be negative when a client restarts a file from zero)."""

    def __init__(self, display: "ProgressDisplay", task: Any, cancel: threading.Event):
        self._display = display
        self._task = task
        self._cancel = cancel
        self.completed = 0

    def advance(self, delta: int) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled()
        if delta:
            self.completed += delta
            self._display.advance(self._task, delta)

    def reset_to(self, completed: int) -> None:
        self.advance(completed - self.completed)

    def set_phase(self, label: str, total: int) -> None:
        """Switch the bar to another pass over the file (e.g. hashing); does not count toward the total bytes."""
        self._display.set_phase(self._task, label, total)

    def phase_advance(self, delta: int) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled()
        self._display.phase_advance(self._task, delta)

    def close(self) -> None:
        self._display.remove(self._task)


class ProgressDisplay:
    """No display at all (--quiet, --json, library use). Subclasses draw something."""

    def start(self, total_bytes: int, files: int, *, verifying: bool = False) -> None:
        """`verifying`: the total counts bytes hashed (--verify) instead of bytes transferred."""

    def add_file(self, name: str, size: int) -> Any:
        return None

    def advance(self, task: Any, delta: int) -> None: ...

    def set_phase(self, task: Any, label: str, total: int) -> None: ...

    def phase_advance(self, task: Any, delta: int) -> None: ...

    def remove(self, task: Any) -> None: ...

    def note(self, message: str) -> None: ...

    def stop(self) -> None: ...


class RichProgressDisplay(ProgressDisplay):
    """One bar per active file plus the total: bytes, rate, ETA. Drawn on stderr so stdout stays clean."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        from rich.table import Column

        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(width=NAME_WIDTH + 7, no_wrap=True)),
            BarColumn(bar_width=None, table_column=Column(ratio=1)),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True, highlight=False),
            expand=True,
            transient=False,
        )
        self._lock = threading.Lock()  # Rich is thread-safe per call; the lock keeps total and file updates paired
        self._total: Any = None
        self._names: dict[Any, str] = {}
        self._started = False
        self._verifying = False

    def start(self, total_bytes: int, files: int, *, verifying: bool = False) -> None:
        self._started = True
        self._verifying = verifying
        if self._total is not None:  # a second phase (re-hashing what is on disk, then the transfer)
            self._progress.remove_task(self._total)
        self._progress.start()
        label = "verified" if verifying else "total"
        self._total = self._progress.add_task(f"[bold]{label} ({files} files)", total=total_bytes)

    def add_file(self, name: str, size: int) -> Any:
        short = name if len(name) <= NAME_WIDTH else "…" + name[-(NAME_WIDTH - 1):]
        with self._lock:
            task = self._progress.add_task(short, total=size)
            self._names[task] = short
            return task

    def advance(self, task: Any, delta: int) -> None:
        with self._lock:
            self._progress.advance(task, delta)
            if self._total is not None:
                self._progress.advance(self._total, delta)

    def set_phase(self, task: Any, label: str, total: int) -> None:
        with self._lock:
            self._progress.reset(task, total=total, description=f"[dim]{label}[/] {self._names.get(task, '')}")

    def phase_advance(self, task: Any, delta: int) -> None:
        with self._lock:
            self._progress.advance(task, delta)
            if self._verifying and self._total is not None:
                self._progress.advance(self._total, delta)

    def remove(self, task: Any) -> None:
        with self._lock:
            self._names.pop(task, None)
            self._progress.remove_task(task)

    def note(self, message: str) -> None:
        self._progress.console.print(message, soft_wrap=True)

    def stop(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False
