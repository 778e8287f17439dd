"""Running the app under uvicorn: in the foreground for `vdeploy serve` (SIGTERM/SIGINT drain in-flight requests,
then exit 0; a second signal cuts the drain short; a dead engine stops it with exit code 1), or in a background
thread for tests and embedding (`ServerThread`, ephemeral port).

The socket is bound here, before uvicorn starts, so that the caller knows the real port (port 0 = any free port)
and a bind failure is reported as a clear error instead of a uvicorn log line."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Optional

from vdeploy.errors import ConfigError

logger = logging.getLogger("vdeploy.server")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "pick another --port, or stop the process using it" if e.errno == errno.EADDRINUSE else None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}", hint=hint) from None
    # listen now: connections that arrive while the model loads wait in the backlog instead of being refused
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (`vdeploy serve --json-logs`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def json_log_config(log_level: str) -> dict[str, Any]:
    """logging.config dict routing uvicorn's and vdeploy's loggers through JsonLogFormatter on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            name: {"handlers": ["stderr"], "level": log_level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "vdeploy")
        },
    }


# After the drain deadline the cut requests still write their error event or 503 and close: uvicorn cancels the
# tasks still running this much later (a cancelled task is what leaves a client with a truncated body).
_CUT_GRACE_S = 10


def _uvicorn_config(app: Any, drain_timeout_s: float, log_level: str, json_logs: bool = False,
                    grace_s: int = 0) -> Any:
    import uvicorn

    extra = {"log_config": json_log_config(log_level)} if json_logs else {}
    return uvicorn.Config(
        app,
        log_level=log_level,
        timeout_graceful_shutdown=max(int(drain_timeout_s), 1) + grace_s,
        timeout_keep_alive=5,
        # per-request access lines: wanted by log collectors (JSON) and when debugging, noise otherwise
        access_log=json_logs or log_level in ("debug", "trace"),
        **extra,
    )


@dataclass
class ServeOutcome:
    """How a foreground server ended, for the final line and the exit code."""

    cut: Optional[int] = None  # requests failed at the drain deadline (None: no drain ran to its end)
    forced: bool = False  # a second signal cut the drain short: the requests still open were aborted
    engine_stopped: bool = False  # the engine died while serving: exit 1, so a supervisor restarts the server


# how often the server checks that its engine still runs: a dead engine core is noticed within this
_ENGINE_POLL_S = 0.5
# then it keeps answering (/health 503, engine_dead) this long before it closes its port: a load balancer's probe
# sees the failure as such rather than as a refused connection
_DEAD_GRACE_S = 1.0


def serve_foreground(
    app: Any,
    sock: socket.socket,
    *,
    drain_timeout_s: float = 30.0,
    log_level: str = "info",
    json_logs: bool = False,
    drain: Optional[Callable[[], Awaitable[int]]] = None,
    on_drained: Optional[Callable[[], None]] = None,
    engine_running: Optional[Callable[[], bool]] = None,
) -> ServeOutcome:
    """Serve until SIGTERM/SIGINT, or until `engine_running()` turns False (the engine died: answering 503
    forever would hide that from a supervisor). Then stop accepting and run `drain` on the server's loop while
    uvicorn waits for the open requests: `drain` lets them finish for up to drain_timeout_s, then fails the rest
    (each stream gets an error event and [DONE], each waiting request a 503) and returns how many it cut. A second
    signal during the drain cuts it short. Then `on_drained` runs (the caller releases its engine there, which
    also fails what a cut-short drain left open)."""
    server = _draining_server(_uvicorn_config(app, drain_timeout_s, log_level, json_logs, grace_s=_CUT_GRACE_S),
                              drain, engine_running)
    # uvicorn re-raises the signal it caught once it has shut down; with Python-level handlers installed here the
    # re-raise lands in them instead of killing the process with 128+signum.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        if on_drained is not None:
            on_drained()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.outcome


def _draining_server(config: Any, drain: Optional[Callable[[], Awaitable[int]]],
                     engine_running: Optional[Callable[[], bool]] = None) -> Any:
    """A uvicorn.Server whose shutdown runs `drain` beside uvicorn's own wait for open connections, and which shuts
    itself down when its engine stops (defined here: uvicorn is imported only when serving)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.outcome = ServeOutcome()
            self._watcher: Optional[asyncio.Task] = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn forces only on a second SIGINT; a supervisor's second SIGTERM means the same
            if self.should_exit:
                self.force_exit = True
            super().handle_exit(sig, frame)

        async def startup(self, sockets: Optional[list[socket.socket]] = None) -> None:
            await super().startup(sockets)
            if engine_running is not None:
                self._watcher = asyncio.ensure_future(self._watch_engine())

        async def _watch_engine(self) -> None:
            while not self.should_exit:
                if not engine_running():
                    self.outcome.engine_stopped = True
                    await asyncio.sleep(_DEAD_GRACE_S)
                    self.should_exit = True
                    return
                await asyncio.sleep(_ENGINE_POLL_S)

        async def shutdown(self, sockets: Optional[list[socket.socket]] = None) -> None:
            if self._watcher is not None:
                self._watcher.cancel()
            task = asyncio.ensure_future(drain()) if drain is not None else None
            await super().shutdown(sockets)  # returns early once force_exit is set
            if task is None:
                return
            while not task.done() and not self.force_exit:
                await asyncio.wait({task}, timeout=0.1)
            if task.done():
                self.outcome.cut = task.result()
            else:  # forced: on_drained (the engine's close) aborts what is still open
                task.cancel()
                self.outcome.forced = True

    return DrainingServer(config)


class ServerThread:
    """uvicorn on its own event loop in a daemon thread. `url` is valid once `start()` returns."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, drain_timeout_s: float = 5.0,
                 log_level: str = "warning"):
        import uvicorn

        self.sock = bind_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(_uvicorn_config(app, drain_timeout_s, log_level))
        # uvicorn only installs signal handlers in the main thread, so an embedded server leaves them alone
        self._thread = threading.Thread(target=self._run, name=f"vdeploy-http-{self.port}", daemon=True)
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as e:  # noqa: BLE001 - reported by start()/stop()
            self._error = e

    def start(self, timeout_s: float = 30.0) -> "ServerThread":
        self._thread.start()
        waited = 0.0
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            if waited > timeout_s:
                raise TimeoutError("server did not start in time")
            threading.Event().wait(0.02)
            waited += 0.02
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
