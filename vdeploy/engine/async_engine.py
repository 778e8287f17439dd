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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.outputs import EngineStats
from vdeploy.engine.outputs import OutputKind, RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.streams import EngineDeadError, EngineShuttingDown, StreamingEngine, stream_outputs
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import ConfigError, VdeployError

__all__ = ["AsyncEngine"]

_IDLE_WAIT_S = 0.5  # how long the idle loop sleeps before re-checking for shutdown


class AsyncEngine(StreamingEngine):
    def __init__(self, config: EngineConfig, *, core: EngineCore | None = None, model_name: str | None = None):
        super().__init__(config.scheduler.max_waiting)
        self.core = core or EngineCore(config)
        self.config = config
        self.model_name = model_name or Path(config.model).name
        self._commands: list[tuple[str, Any]] = []  # guarded by _lock, as _streams
        self._closed = False
        self._num_pending_adds = 0
        self._wakeup = threading.Event()
        self._stop = threading.Event()
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
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str, lora_name: str | None = None,
        output_kind: OutputKind = OutputKind.CUMULATIVE, cache_salt: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs for one request (each with its delta; OutputKind.DELTA: only the delta); the last has
        finished=True. Leaving the loop early (client gone, task cancelled) aborts the request and frees its KV
        blocks."""
        self._check_accepting()
        self.core.check_request(prompt_token_ids, params)
        with self._lock:
            waiting = self.core.scheduler.num_waiting + self._num_pending_adds
            stream = self._open_stream(request_id, params.n, waiting, output_kind)
            self._commands.append(("add", (request_id, list(prompt_token_ids), params, lora_name, output_kind,
                                           cache_salt)))
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

    def abort(self, request_id: str) -> None:
        """Abort from any thread; a no-op for unknown or finished requests."""
        with self._lock:
            self._commands.append(("abort", request_id))
        self._wakeup.set()

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
                request_id, prompt, params, lora_name, output_kind, cache_salt = payload
                with self._lock:
                    self._num_pending_adds -= params.n
                try:
                    self.core.add_request(request_id, prompt, params, output_kind=output_kind, lora_name=lora_name,
                                          cache_salt=cache_salt)
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
