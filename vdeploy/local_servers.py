"""Records of the `vdeploy serve` processes running on this host, for `vdeploy ps`, `stop` and `run`.

Each server writes one small JSON file on start ({pid}.json under the runtime directory) and removes it at exit;
a server killed with SIGKILL leaves its file behind, so readers check the pid is alive (and is the same process:
its start time matches, so a recycled pid does not count) and delete stale ones. Plain files rather than a daemon:
nothing to keep running, nothing to lock."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

from vdeploy.env.procfs import process_start, process_state


@dataclass(frozen=True)
class ServerRecord:
    pid: int
    model: str  # what serve was given (path, hub id, bundled name, or the demo model's directory)
    served_model_name: str  # the name clients send
    host: str
    port: int
    tp: int
    pp: int
    started: float  # time.time() at start
    proc_start: Optional[int] = None  # the process's start time in clock ticks since boot (/proc/PID/stat), or None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def names(self) -> set[str]:
        """What `run`/`stop` may call this server by."""
        return {self.served_model_name, self.model, Path(self.model).name, str(self.pid), str(self.port)}


def runtime_dir() -> Path:
    """$VDEPLOY_RUNTIME_DIR, else $XDG_RUNTIME_DIR/vdeploy (cleared at logout, like the servers), else
    $VDEPLOY_HOME/run."""
    if os.environ.get("VDEPLOY_RUNTIME_DIR"):
        return Path(os.environ["VDEPLOY_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "vdeploy"
    from vdeploy.env.host import model_home

    return model_home() / "run"


def is_running(record: ServerRecord) -> bool:
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    if process_state(record.pid) == "a zombie":  # exited, not yet reaped by its parent
        return False
    # a recycled pid is some other process, started later: the record is stale
    return record.proc_start is None or process_start(record.pid) in (None, record.proc_start)


def list_servers(directory: Optional[Path] = None) -> list[ServerRecord]:
    """Live servers, oldest first; stale records are removed on the way."""
    directory = directory or runtime_dir()
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = ServerRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being written, or not ours
        if is_running(record):
            records.append(record)
        else:
            path.unlink(missing_ok=True)
    return sorted(records, key=lambda r: r.started)


@contextmanager
def registered(record: ServerRecord, directory: Optional[Path] = None) -> Iterator[Optional[Path]]:
    """The record exists while the block runs (written atomically: a reader never sees half a file)."""
    path = (directory or runtime_dir()) / f"{record.pid}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(path)
    except OSError:  # a read-only home must not stop the server; it is then just not listed by `vdeploy ps`
        yield None
        return
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def server_record(*, model: str, served_model_name: str, host: str, port: int, tp: int, pp: int) -> ServerRecord:
    pid = os.getpid()
    return ServerRecord(pid=pid, model=model, served_model_name=served_model_name, host=host, port=port, tp=tp,
                        pp=pp, started=time.time(), proc_start=process_start(pid))
