"""The engine for the server with EngineCore stepping in a background thread, asyncio streams in front.

`vdeploy serve` runs the same interface with the core in its own process (vdeploy/engine/process_engine.py); this
in-thread form stays for tests with fake executors, embedding, and `vdeploy serve --no-engine-process`.

The step loop owns the EngineCore; the event loop never calls into it (a GPU step must not stall HTTP, and a slow
client must not stall the GPU). Requests and aborts travel to the loop thread as commands; outputs come back to each
request's asyncio.Queue through `call_soon_threadsafe`. A failing step fails every open stream instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.engine_core import EngineCore, EngineStats
from vdeploy.engine.outputs import RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import QueueFull
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import ConfigError, VdeployError

__all__ = ["AsyncEngine", "EngineDeadError", "EngineShuttingDown", "QueueFull"]

_IDLE_WAIT_S = 0.5  # how long the idle loop sleeps before re-checking for shutdown


class EngineDeadError(VdeployError):
    """The step loop failed; the engine serves no more requests (the server reports unhealthy)."""

    exit_code = 1


class EngineShuttingDown(VdeployError):
    """New requests are refused while the engine drains."""

    exit_code = 1


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


async def stream_outputs(stream: _Stream, close: Callable[[bool], None]) -> AsyncIterator[RequestOutput]:
    """A request's outputs from its queue up to the finished one (an exception put there is raised). However the
    loop ends (finished, client gone, task cancelled), `close(finished)` runs: the engine drops the stream and,
    unless it finished, aborts the request so its KV blocks are freed."""
    finished = False
    try:
        while True:
            item = await stream.queue.get()
            if isinstance(item, BaseException):
                finished = True  # nothing left to abort
                raise item
            finished = item.finished
            yield item
            if finished:
                return
    finally:
        close(finished)


class AsyncEngine:
    def __init__(self, config: EngineConfig, *, core: EngineCore | None = None, model_name: str | None = None):
        self.core = core or EngineCore(config)
        self.config = config
        self.model_name = model_name or Path(config.model).name
        self._lock = threading.Lock()  # guards _commands and _streams
        self._commands: list[tuple[str, Any]] = []
        self._streams: dict[str, _Stream] = {}
        self._closed = False
        self._num_pending_adds = 0
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._accepting = True
        self._error: BaseException | None = None
        self._stats = self.core.stats()
        self._lora_paths = self._read_loras()
        self._thread = threading.Thread(target=self._run, name=f"vdeploy-engine-{id(self):x}", daemon=True)
        self._thread.start()

    # ---- read-only facts for the server -------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.core.tokenizer

    @property
    def model_config(self) -> ModelConfig:
        return self.core.model_config

    @property
    def max_model_len(self) -> int:
        return self.core.max_model_len

    @property
    def generation_defaults(self) -> dict[str, Any]:
        return self.core.generation_defaults

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self.core.eos_token_ids

    @property
    def is_running(self) -> bool:
        return self._error is None and self._thread.is_alive()

    def stats(self) -> EngineStats:
        """The snapshot taken after the latest step (never blocks on the step loop)."""
        return self._stats

    # ---- requests -----------------------------------------------------------------------------------------------
    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str, lora_name: str | None = None
    ) -> AsyncIterator[RequestOutput]:
        """Stream delta outputs for one request; the last has finished=True. Leaving the loop early (client gone,
        task cancelled) aborts the request and frees its KV blocks."""
        self._check_accepting()
        self.core.check_request(prompt_token_ids, params)
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if request_id in self._streams:
                raise ConfigError(f"duplicate request id {request_id!r}")
            waiting = self.core.scheduler.num_waiting + self._num_pending_adds
            if waiting + params.n > self.config.scheduler.max_waiting:
                raise QueueFull(
                    f"the waiting queue is full ({self.config.scheduler.max_waiting} requests)", hint="retry shortly"
                )
            self._streams[request_id] = stream
            self._commands.append(("add", (request_id, list(prompt_token_ids), params, lora_name)))
            self._num_pending_adds += params.n
        self._wakeup.set()
        async for item in stream_outputs(stream, lambda finished: self._close_stream(request_id, finished)):
            yield item

    @property
    def lora_adapters(self) -> dict[str, str]:
        """Loaded LoRA adapters: name -> directory (a snapshot the step loop replaces after each change)."""
        return dict(self._lora_paths)

    def _read_loras(self) -> dict[str, str]:
        loras = self.core.loras
        return {name: loras.adapter(name).path for name in loras.names()} if loras is not None else {}

    async def load_lora(self, name: str, path: str) -> None:
        """Load a LoRA adapter between two steps; raises its refusal (LoRAAdapterError …)."""
        await self._lora_call(name, path)

    async def unload_lora(self, name: str) -> None:
        await self._lora_call(name, None)

    async def _lora_call(self, name: str, path: str | None) -> None:
        import concurrent.futures

        self._check_accepting()
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._commands.append(("lora", (name, path, future)))
        self._wakeup.set()
        await asyncio.wrap_future(future)

    def _close_stream(self, request_id: str, finished: bool) -> None:
        with self._lock:
            self._streams.pop(request_id, None)
        if not finished:
            self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Abort from any thread; a no-op for unknown or finished requests."""
        with self._lock:
            self._commands.append(("abort", request_id))
        self._wakeup.set()

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

    def close(self) -> None:
        """Stop at once: open streams get EngineShuttingDown, the step loop ends, the executor is released.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        self._stop.set()
        self._wakeup.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._fail_streams(EngineShuttingDown("the engine shut down before the request finished"))
        self.core.shutdown()

    def _check_accepting(self) -> None:
        if self._error is not None:
            raise EngineDeadError(f"the engine stopped after an error: {self._error}") from self._error
        if not self._accepting:
            raise EngineShuttingDown("the engine is shutting down", hint="retry against another replica")

    # ---- the step loop (background thread) ----------------------------------------------------------------------
    def _run(self) -> None:
        core = self.core
        try:
            while not self._stop.is_set():
                self._apply_commands()
                if not core.has_unfinished_requests():
                    self._stats = core.stats()
                    core.check_idle()
                    self._wakeup.wait(_IDLE_WAIT_S)
                    self._wakeup.clear()
                    continue
                outputs = core.step()
                self._stats = core.stats()
                self._deliver(outputs)
        except BaseException as e:  # noqa: BLE001 - every failure must reach the waiting clients
            self._error = e
            self._fail_streams(EngineDeadError(f"engine step failed: {type(e).__name__}: {e}"))

    def _apply_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for kind, payload in commands:
            if kind == "add":
                request_id, prompt, params, lora_name = payload
                with self._lock:
                    self._num_pending_adds -= params.n
                try:
                    self.core.add_request(request_id, prompt, params, lora_name=lora_name)
                except VdeployError as e:  # e.g. QueueFull under a race: that request fails, the engine goes on
                    self._deliver_to(request_id, e)
            elif kind == "lora":
                name, path, future = payload
                try:
                    self.core.add_lora(name, path) if path is not None else self.core.remove_lora(name)
                except ConfigError as e:  # a bad adapter is refused; the engine goes on (a rank failure does not)
                    future.set_exception(e)
                except BaseException as e:  # the step loop dies with it: the caller must not wait forever
                    future.set_exception(EngineDeadError(f"loading LoRA adapter {name!r} failed: {e}"))
                    raise
                else:
                    self._lora_paths = self._read_loras()
                    future.set_result(None)
            else:
                self.core.abort_request([payload])

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            self._deliver_to(out.request_id, out)

    def _deliver_to(self, request_id: str, item: RequestOutput | BaseException) -> None:
        with self._lock:
            stream = self._streams.get(request_id)
        if stream is None:
            if isinstance(item, RequestOutput) and not item.finished:
                self.core.abort_request([request_id])  # its consumer is gone
            return
        try:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)
        except RuntimeError:  # the consumer's event loop is closed
            self.core.abort_request([request_id])

    def _fail_streams(self, error: BaseException) -> None:
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.queue.put_nowait, error)
            except RuntimeError:
                pass

