"""The request streams both server-side engines keep: AsyncEngine (the core in a thread) and ProcessAsyncEngine (the
core in its own process) differ in how requests reach the core and outputs come back, not in how a request's
asyncio stream opens, ends, is cut at shutdown or failed when the engine dies. That part lives here, once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Optional

from vdeploy.engine.outputs import CompletionOutput, OutputKind, RequestOutput
from vdeploy.engine.scheduler import QueueFull
from vdeploy.errors import ConfigError, VdeployError


class EngineDeadError(VdeployError):
    """The step loop failed; the engine serves no more requests (the server reports unhealthy)."""

    exit_code = 1


class EngineShuttingDown(VdeployError):
    """New requests are refused while the engine drains."""

    exit_code = 1


@dataclass
class RequestStream:
    loop: asyncio.AbstractEventLoop  # the consumer's event loop: outputs are put from other threads through it
    queue: asyncio.Queue
    kind: OutputKind = OutputKind.CUMULATIVE  # what its outputs carry (DELTA: only what is new)


async def stream_outputs(stream: RequestStream, close: Callable[[bool], None]) -> AsyncIterator[RequestOutput]:
    """A request's outputs from its queue up to the finished one (an exception put there is raised). However the
    loop ends (finished, client gone, task cancelled), `close(finished)` runs: the engine drops the stream and,
    unless it finished, aborts the request so its KV blocks are freed.

    Outputs that queued up while the consumer was busy come out as one (their deltas joined): a server that falls
    behind the engine then writes fewer, larger events instead of an ever longer backlog (vLLM's output collector
    does the same)."""
    finished = False
    try:
        while True:
            item = await stream.queue.get()
            if isinstance(item, BaseException):
                finished = True  # nothing left to abort
                raise item
            error: Optional[BaseException] = None
            while not item.finished and not stream.queue.empty():
                later = stream.queue.get_nowait()
                if isinstance(later, BaseException):
                    error = later
                    break
                item = joined(item, later, stream.kind)
            finished = item.finished
            yield item
            if error is not None:
                finished = True
                raise error
            if finished:
                return
    finally:
        close(finished)


def joined(earlier: RequestOutput, later: RequestOutput, kind: OutputKind = OutputKind.CUMULATIVE) -> RequestOutput:
    """One output standing for two consecutive ones of a request: `later`'s state with both deltas (DELTA: both
    deltas are all it holds). An output carries only the samples that changed, so a sample only `earlier` names
    keeps its entry from there."""
    by_index = {c.index: c for c in earlier.outputs}
    for c in later.outputs:
        before = by_index.get(c.index)
        by_index[c.index] = c if before is None else _joined_sample(before, c, kind)
    # the prompt's logprobs come once (DELTA), in the earlier output
    return replace(later, outputs=list(by_index.values()),
                   prompt_logprobs=later.prompt_logprobs or earlier.prompt_logprobs)


def _joined_sample(before: CompletionOutput, c: CompletionOutput, kind: OutputKind) -> CompletionOutput:
    delta_text, delta_ids = before.delta_text + c.delta_text, before.delta_token_ids + c.delta_token_ids
    if kind is not OutputKind.DELTA:
        return replace(c, delta_text=delta_text, delta_token_ids=delta_ids)
    logprobs = None if before.logprobs is None and c.logprobs is None else (before.logprobs or []) + (c.logprobs or [])
    return CompletionOutput.delta(c.index, delta_text, delta_ids, logprobs, c.finish_reason, c.stop_reason)


class StreamingEngine:
    """The stream table of an engine the server talks to. Subclasses provide is_running, abort(request_id) and
    close(), and may guard more of their own state with the same lock."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._lock = threading.Lock()  # guards _streams (and what subclasses add)
        self._streams: dict[str, RequestStream] = {}
        self._accepting = True
        self._error: Optional[BaseException] = None

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    def abort(self, request_id: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _open_stream(self, request_id: str, num_seqs: int, num_waiting: int,
                     kind: OutputKind = OutputKind.CUMULATIVE) -> RequestStream:
        """Register a stream for request_id (under the lock: the caller passes the waiting count it read there)."""
        if request_id in self._streams:
            raise ConfigError(f"duplicate request id {request_id!r}")
        if num_waiting + num_seqs > self.max_waiting:
            raise QueueFull(f"the waiting queue is full ({self.max_waiting} requests)", hint="retry shortly")
        stream = RequestStream(asyncio.get_running_loop(), asyncio.Queue(), kind)
        self._streams[request_id] = stream
        return stream

    def _close_stream(self, request_id: str, finished: bool) -> None:
        with self._lock:
            self._streams.pop(request_id, None)
        if not finished:
            self.abort(request_id)

    def _check_accepting(self) -> None:
        if self._error is not None:
            dead = isinstance(self._error, EngineDeadError)  # already names its cause
            message = str(self._error) if dead else f"the engine stopped after an error: {self._error}"
            raise EngineDeadError(message) from self._error
        if not self._accepting:
            raise EngineShuttingDown("the engine is shutting down", hint="retry against another replica")

    async def shutdown(self, drain_timeout_s: float = 30.0) -> int:
        """Refuse new requests, let in-flight ones finish for up to drain_timeout_s, then stop: the requests still
        open fail with EngineShuttingDown (the server answers a stream's with an error event, a waiting request's
        with a 503). Returns how many were cut."""
        self._accepting = False
        deadline = time.monotonic() + drain_timeout_s
        while self.is_running and time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._streams)
            if not busy:
                break
            await asyncio.sleep(0.05)
        with self._lock:
            cut = len(self._streams)
        await asyncio.to_thread(self.close)
        return cut

    def _fail_streams(self, error: BaseException) -> None:
        """Every open stream ends with `error` (the engine died or shut down)."""
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.queue.put_nowait, error)
            except RuntimeError:  # that consumer's event loop is closed
                pass

