"""A small pool of daemon threads for transfers and hashing.

Daemon threads (not concurrent.futures, whose workers the interpreter joins at exit) let Ctrl-C end the process
promptly: the main thread sets the cancel event, transfers stop at their next chunk (FileBar raises
DownloadCancelled), and a transfer stuck in a network read cannot hold the exit hostage. Whatever was written stays
on disk as a partial file for the next run."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from vdeploy.download.progress import DownloadCancelled

T = TypeVar("T")
R = TypeVar("R")

JOIN_ON_CANCEL_S = 5.0


def run_in_threads(items: list[T], fn: Callable[[T], R], workers: int,
                   cancel: threading.Event) -> Iterator[tuple[T, R | None, BaseException | None]]:
    """Yield (item, result, error) in completion order; on KeyboardInterrupt (or the consumer stopping early) cancel
    the rest and re-raise."""
    todo: queue.Queue[T] = queue.Queue()
    for item in items:
        todo.put(item)
    done: queue.Queue[tuple[T, R | None, BaseException | None]] = queue.Queue()

    def loop() -> None:
        while not cancel.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((item, fn(item), None))
            except DownloadCancelled:
                return
            except BaseException as exc:  # handed to the consumer, which decides
                done.put((item, None, exc))

    threads = [threading.Thread(target=loop, name=f"vdeploy-download-{i}", daemon=True)
               for i in range(max(1, min(workers, len(items))))]
    for thread in threads:
        thread.start()
    pending = len(items)
    try:
        while pending:
            try:
                outcome = done.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and done.empty():
                    return  # every worker stopped early (cancelled from outside)
                continue
            pending -= 1
            yield outcome
    except BaseException:
        cancel.set()
        for thread in threads:
            thread.join(timeout=JOIN_ON_CANCEL_S / len(threads))
        raise
