"""The rank processes of one node: start them, talk to them over one duplex pipe each, watch them, stop them.

Used by the engine's MultiProcExecutor (node 0) and by `vdeploy worker-host` (every other node). Every wait watches
the ranks' pipes *and* their process sentinels, so a rank that raises or dies surfaces as a `RankFailure` within
moments; stopping never leaves a process behind (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from vdeploy.executor.control import (
    SHUTDOWN,
    RankCall,
    RankReply,
    UserErrorInfo,
    decode,
    encode,
)
from vdeploy.executor.rank_process import RankLaunch, run_rank

GRACEFUL_EXIT_S = 5.0  # after a shutdown call, before terminate
TERMINATE_EXIT_S = 2.0  # after terminate (SIGTERM), before kill (SIGKILL)


class RankFailure(Exception):
    """A rank raised (its traceback and, for a VdeployError, its fields came back) or died, or a peer node did."""

    def __init__(self, message: str, remote_traceback: str | None = None, user_error: UserErrorInfo | None = None):
        super().__init__(message)
        self.message, self.remote_traceback, self.user_error = message, remote_traceback, user_error
        self.timed_out = False  # the step watchdog fired: nobody died or raised


class LocalRanks:
    """One process per entry of `launches` (global ranks of this node), started by `ctx` (a multiprocessing
    context). Index i of every list here is launches[i]."""

    def __init__(self, launches: list[RankLaunch], ctx):
        self.launches = launches
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        self._exited: set[int] = set()  # ranks that exited cleanly (no longer watched)
        try:
            for launch in launches:
                parent_end, child_end = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=run_rank, args=(launch, child_end), name=f"vdeploy-rank{launch.rank}",
                                   daemon=True)
                self.procs.append(proc)
                self.conns.append(parent_end)
                proc.start()
                child_end.close()  # only the child holds it now, so the parent sees EOF when the child dies
        except BaseException:
            self.procs = [p for p in self.procs if p.pid is not None]
            self.stop(None)
            raise

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def send(self, payload: bytes, indices: list[int]) -> None:
        for i in indices:
            try:
                self.conns[i].send_bytes(payload)
            except OSError:
                self._raise_dead(i)

    def wait_replies(self, indices: list[int], timeout: float | None = None,
                     poll: Callable[[], None] | None = None, poll_interval_s: float = 0.5) -> dict[int, Any]:
        """Replies of the ranks at `indices`, watching every rank for errors and deaths meanwhile; `poll` (which
        may raise RankFailure) runs about every `poll_interval_s` while waiting."""
        pending = set(indices)
        values: dict[int, Any] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            ready = self._wait_any(deadline, poll, poll_interval_s)
            if ready is None:
                names = ", ".join(str(self.launches[i].rank) for i in sorted(pending))
                failure = RankFailure(f"rank(s) {names} gave no reply within {timeout:.0f} s")
                failure.timed_out = True
                raise failure
            for i, reply in self._read(ready):
                if i not in pending:
                    raise RankFailure(f"rank {self.launches[i].rank} sent an unexpected reply")
                values[i] = reply.value
                pending.discard(i)
        return values

    def check(self) -> None:
        """Raise RankFailure when a rank died or reported an error since the last wait (no blocking)."""
        objects = [c for c in self.conns if not c.closed] + [
            p.sentinel for i, p in enumerate(self.procs) if i not in self._exited]
        ready = wait(objects, timeout=0)
        for i, _ in self._read(ready):
            raise RankFailure(f"rank {self.launches[i].rank} sent an unexpected reply")

    def watch_until_exit(self, poll: Callable[[], None] | None = None, poll_interval_s: float = 0.5) -> None:
        """Wait until every rank has exited cleanly (exit code 0, after a shutdown); raise on an error report or
        an unclean exit. Replies that are not errors are ignored."""
        alive = set(range(len(self.procs)))
        while alive:
            ready = self._wait_any(None, poll, poll_interval_s)
            for _ in self._read(ready, exited_ok=alive):
                pass

    def stop(self, graceful_indices: list[int] | None) -> None:
        """Ask `graceful_indices` to shut down (None: nobody, terminate at once); SIGKILL whoever is left after the
        grace periods; close the pipes. Never leaves a process behind."""
        if graceful_indices:
            payload = encode(RankCall(SHUTDOWN))
            for i in graceful_indices:
                try:
                    self.conns[i].send_bytes(payload)
                except OSError:
                    pass
            _join_all(self.procs, GRACEFUL_EXIT_S)
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        _join_all(self.procs, TERMINATE_EXIT_S)
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()

    # ---- internals ---------------------------------------------------------------------------------------------

    def _wait_any(self, deadline: float | None, poll, poll_interval_s: float) -> list | None:
        """Ready pipes/sentinels, or None once `deadline` passed; runs `poll` between short waits."""
        objects = [c for c in self.conns if not c.closed] + [
            p.sentinel for i, p in enumerate(self.procs) if i not in self._exited]
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            step = remaining if poll is None else min(poll_interval_s, remaining if remaining is not None else 1e9)
            ready = wait(objects, timeout=step)
            if ready:
                return ready
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if poll is not None:
                poll()

    def _read(self, ready: list, exited_ok: set[int] | None = None):
        """Yield (index, ok reply) for readable pipes; raise on errors and deaths. With `exited_ok`, a rank that
        exited with code 0 is removed from that set instead of counting as a failure."""
        readers = {conn: i for i, conn in enumerate(self.conns)}
        sentinels = {proc.sentinel: i for i, proc in enumerate(self.procs)}
        for obj in ready:  # pipes first: a rank that reported an error and then exited is read, not guessed
            if obj in readers:
                i = readers[obj]
                try:
                    reply: RankReply = decode(obj.recv_bytes())
                except (EOFError, OSError):
                    if exited_ok is not None and self._exited_cleanly(i):
                        obj.close()
                        continue
                    self._raise_dead(i)
                if not reply.ok:
                    raise RankFailure(f"rank {self.launches[i].rank} failed: {reply.error}", reply.traceback,
                                      reply.user_error)
                yield i, reply
        for obj in ready:
            if obj in sentinels:
                i = sentinels[obj]
                if self.conns[i].closed or not self.conns[i].poll():
                    if exited_ok is not None and self._exited_cleanly(i):
                        exited_ok.discard(i)
                        self._exited.add(i)
                        continue
                    self._raise_dead(i)

    def _exited_cleanly(self, i: int) -> bool:
        self.procs[i].join(timeout=1.0)
        return self.procs[i].exitcode == 0

    def _raise_dead(self, i: int):
        proc = self.procs[i]
        proc.join(timeout=1.0)
        raise RankFailure(f"rank {self.launches[i].rank} (pid {proc.pid}) died with exit code {proc.exitcode}")


def _join_all(procs: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(timeout=max(deadline - time.monotonic(), 0.0))
