"""AsyncEngine's interface with the EngineCore in its own process (what `vdeploy serve` runs).

The server process keeps the tokenizer (chat templates, prompt encoding), the model's config and one asyncio stream
per request; the core process (vdeploy/engine/core_process.py) schedules, runs the model and detokenizes. They talk
over a Unix socketpair in schema'd msgpack (vdeploy/engine/core_codec.py), never pickle. A data-parallel replica
on another node is the same engine over an authenticated TCP connection (vdeploy/engine/core_endpoint.py).

One reader thread receives the core's messages: one per engine step, carrying every request's delta. Each message
wakes each consumer event loop once (one `call_soon_threadsafe` per loop per step, not per token per request).
When the core process dies, the reader sees the socket close, names the cause (exit code or signal; a remote core:
the closed connection) and fails every open stream with EngineDeadError; /health turns 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine import core_codec as wire
from vdeploy.engine.core_endpoint import LocalCore, RemoteCore
from vdeploy.engine.outputs import EngineStats
from vdeploy.engine.outputs import OutputKind, RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import QueueFull
from vdeploy.engine.streams import EngineDeadError, EngineShuttingDown, StreamingEngine, stream_outputs
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.env.procfs import STUCK_STATES
from vdeploy.errors import VdeployError

__all__ = ["ProcessAsyncEngine"]

_EXIT_WAIT_S = 30.0  # how long close() waits for the core to release the executor before killing it
# after a drain, the core gets as long as the drain to exit, but at least this (and at most _EXIT_WAIT_S): a core
# stuck in a step must not keep `--drain-timeout 3` waiting for 30 s
_EXIT_GRACE_S = 5.0
# with worker processes (--tp/--pp > 1) the executor inside the core names a stuck rank at --step-timeout; the
# server's own watch waits this much longer, so it only catches the core itself stuck (and names the rank's failure
# second)
_EXECUTOR_FIRST_S = 30.0
_WATCH_PERIOD_S = 1.0

logger = logging.getLogger("vdeploy.engine")


def _error_from(error_type: str, message: str, hint: Optional[str]) -> VdeployError:
    """The core's error as the same exception class where the server knows it (QueueFull -> 503, ConfigError ->
    400, CheckpointError at startup -> the CLI's message), a VdeployError otherwise."""
    import vdeploy.errors as errors

    from vdeploy.engine.guided import InvalidGrammarError
    from vdeploy.lora.adapter import LoRAAdapterError
    from vdeploy.lora.registry import LoRANotFoundError

    known: dict[str, type[VdeployError]] = {"QueueFull": QueueFull, "InvalidGrammarError": InvalidGrammarError,
                                            "LoRAAdapterError": LoRAAdapterError,
                                            "LoRANotFoundError": LoRANotFoundError}
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, VdeployError):
            known[name] = cls
    cls = known.get(error_type)
    return cls(message, hint=hint) if cls is not None else VdeployError(f"{error_type}: {message}", hint=hint)


class ProcessAsyncEngine(StreamingEngine):
    def __init__(self, config: EngineConfig, *, model_name: Optional[str] = None,
                 chat_template: Optional[str] = None, model_config: Optional[ModelConfig] = None,
                 env: Optional[dict[str, str]] = None, core: Optional[RemoteCore] = None):
        """env: extra environment of the core process (a data-parallel replica's CUDA_VISIBLE_DEVICES).
        core: a connected replica of another node, instead of starting a core process here."""
        super().__init__(config.scheduler.max_waiting)
        self.config = config
        self.model_name = model_name or Path(config.model).name
        self.model_config = model_config or ModelConfig.from_path(config.model)
        tok_dir = Path(config.tokenizer or config.model)
        self.tokenizer: Optional[Tokenizer] = None
        if chat_template is not None or (tok_dir / "tokenizer.json").is_file():
            self.tokenizer = Tokenizer.from_dir(tok_dir, chat_template_file=chat_template)
        self._send_lock = threading.Lock()  # frames from several threads must not interleave
        self._num_adds_sent = 0  # guarded by _lock, as _streams
        self._num_adds_applied = 0
        self._closing = False
        self._exit_wait_s = _EXIT_WAIT_S
        self.core_killed: Optional[str] = None  # set when close() had to kill a core that did not exit (why)
        self._lora_calls: dict[int, concurrent.futures.Future] = {}  # LoRACommands awaiting their LoRAResult
        self._lora_ids = itertools.count()
        self.lora_adapters: dict[str, str] = dict(config.lora.lora_modules)  # name -> path, as loaded by the core
        # the latest message from the core, or when work began after an idle spell (the step watchdog's clock)
        self._last_progress = time.monotonic()
        self._stall: Optional[str] = None  # why the watchdog stopped the core
        self._watch_stop = threading.Event()
        self._codec = wire.server_side_codec()
        self._decoder = wire.OutputDecoder()
        self._core: LocalCore | RemoteCore = core if core is not None else LocalCore(env)
        try:
            self._send(wire.Init(config))
            ready = self._wait_ready()
        except BaseException:
            self._kill()
            raise
        self.max_model_len = ready.max_model_len
        self.generation_defaults = ready.generation_defaults
        self.eos_token_ids = tuple(ready.eos_token_ids)
        self._stats = ready.stats
        self._thread = threading.Thread(target=self._read_loop, name=f"vdeploy-core-client-{self.pid}", daemon=True)
        self._thread.start()
        timeout = config.parallel.step_timeout_s
        if timeout and timeout > 0:
            limit = timeout + (_EXECUTOR_FIRST_S if config.parallel.world_size > 1 else 0.0)
            threading.Thread(target=self._watch_progress, args=(limit,), name=f"vdeploy-core-watch-{self.pid}",
                             daemon=True).start()

    # ---- facts for the server -----------------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        """The engine-core process id (None: it runs on another node)."""
        return self._core.pid

    @property
    def is_running(self) -> bool:
        return self._error is None and not self._closing and self._core.alive()

    def cut(self, reason: str) -> None:
        """Give up on the core (its node stopped answering): its open streams fail with EngineDeadError naming
        `reason`. A no-op for a core on this host, whose death the reader sees for itself."""
        if isinstance(self._core, RemoteCore):
            self._core.kill(reason)

    @property
    def failure(self) -> Optional[BaseException]:
        """Why the engine stopped serving (the core died: named with its exit code or signal); None while it runs."""
        return self._error

    def stats(self) -> EngineStats:
        """The snapshot the core sent with its latest step (never waits on the core)."""
        return self._stats

    # ---- requests -----------------------------------------------------------------------------------------------
    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str, lora_name: Optional[str] = None,
        output_kind: OutputKind = OutputKind.CUMULATIVE, cache_salt: Optional[str] = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs for one request (each with its delta; OutputKind.DELTA: only the delta, and no copy of
        the answer so far here either); the last has finished=True. Leaving the loop early (client gone, task
        cancelled) aborts the request, and the core frees its KV blocks after the step in flight."""
        self._check_accepting()
        params.validate()  # prompt checks need the scheduler: the core answers them as a RequestError
        with self._lock:
            waiting = self._stats.num_waiting + self._num_adds_sent - self._num_adds_applied
            self._note_work_begins()
            stream = self._open_stream(request_id, params.n, waiting, output_kind)
            self._decoder.start(request_id, output_kind)
            self._num_adds_sent += params.n
        try:
            self._send(wire.AddRequest(request_id, list(prompt_token_ids), params, lora_name, cache_salt))
        except BaseException:
            with self._lock:
                self._decoder.forget(request_id)
            self._close_stream(request_id, finished=False)
            raise
        async for item in stream_outputs(stream, lambda finished: self._close_stream(request_id, finished)):
            yield item

    async def load_lora(self, name: str, path: str) -> None:
        """Load a LoRA adapter in the core (between two steps); raises its refusal (LoRAAdapterError …)."""
        await self._lora_call(name, path)
        self.lora_adapters[name] = path

    async def unload_lora(self, name: str) -> None:
        await self._lora_call(name, None)
        self.lora_adapters.pop(name, None)

    async def _lora_call(self, name: str, path: Optional[str]) -> None:
        self._check_accepting()
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            call_id = next(self._lora_ids)
            self._note_work_begins()
            self._lora_calls[call_id] = future
        try:
            self._send(wire.LoRACommand(call_id, name, path))
        except BaseException:
            with self._lock:
                self._lora_calls.pop(call_id, None)
            raise
        result: wire.LoRAResult = await asyncio.wrap_future(future)
        if result.error_type is not None:
            raise _error_from(result.error_type, result.message, result.hint)

    def abort(self, request_id: str) -> None:
        """Abort from any thread; a no-op for unknown or finished requests (and once the core is gone)."""
        try:
            self._send(wire.AbortRequests([request_id]))
        except EngineDeadError:
            pass

    async def shutdown(self, drain_timeout_s: float = 30.0) -> int:
        self._exit_wait_s = min(_EXIT_WAIT_S, max(drain_timeout_s, _EXIT_GRACE_S))
        return await super().shutdown(drain_timeout_s)

    def close(self) -> None:
        """Stop at once: open streams get EngineShuttingDown, the core process releases the executor and exits (or
        is killed when it has not after the wait; `core_killed` then says so)."""
        if self._closing:
            return
        self._accepting = False
        self._closing = True
        self._watch_stop.set()
        try:
            self._send(wire.Shutdown())
        except EngineDeadError:
            pass
        if self._core.wait_exit(self._exit_wait_s) is None:
            self.core_killed = f"{self._core.label} did not exit within {self._exit_wait_s:g} s and was killed"
            logger.warning(self.core_killed)
            self._kill()
        self._thread.join(5)
        self._fail_streams(EngineShuttingDown("the engine shut down before the request finished"))
        self._core.close()

    # ---- the channel --------------------------------------------------------------------------------------------
    def _send(self, message: Any) -> None:
        frame = self._codec.encode(message)
        try:
            with self._send_lock:
                self._core.sock.sendall(frame)
        except OSError as e:
            raise EngineDeadError(f"the engine process is gone ({e})") from None

    def _receive(self) -> Any:
        payload = self._core.read_frame()
        return None if payload is None else self._codec.decode(payload)

    def _wait_ready(self) -> wire.Ready:
        message = self._receive()
        if isinstance(message, wire.Ready):
            return message
        if isinstance(message, wire.Failed):
            self._core.wait_exit(_EXIT_WAIT_S)
            raise _error_from(message.error_type, message.message, message.hint)
        ended = self._core.wait_exit(_EXIT_WAIT_S) or "stopped answering"
        raise EngineDeadError(f"{self._core.label} {ended} while starting ({self._core.where_logs})")

    def _read_loop(self) -> None:
        failure: Optional[wire.Failed] = None
        try:
            while True:
                message = self._receive()
                if message is None:
                    break
                self._last_progress = time.monotonic()
                if isinstance(message, wire.StepOutputs):
                    self._on_step(message)
                elif isinstance(message, wire.LoRAResult):
                    with self._lock:
                        future = self._lora_calls.pop(message.call_id, None)
                    if future is not None:
                        future.set_result(message)
                elif isinstance(message, wire.Failed):
                    failure = message
        except (wire.ProtocolError, OSError, ValueError) as e:  # ValueError: the file closed under us by close()
            if not self._closing:
                failure = failure or wire.Failed(type(e).__name__, f"broken channel: {e}")
        if self._closing:
            return
        ended = self._core.wait_exit(5)
        if ended is None:
            self._kill()
            ended = self._core.wait_exit(5)
        cause = f" after {failure.error_type}: {failure.message}" if failure else (
            f": {self._stall}" if self._stall else "")
        error = EngineDeadError(f"{self._core.label} {ended}{cause}")
        # the one line an operator sees: the server itself only answers 503 from now on (vdeploy serve then stops)
        logger.error("engine failed: %s", error.message)
        self._error = error
        self._decoder.forget_all()
        self._fail_streams(error)
        with self._lock:
            calls, self._lora_calls = self._lora_calls, {}
        for future in calls.values():
            future.set_exception(error)

    def _on_step(self, message: wire.StepOutputs) -> None:
        deliveries: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        with self._lock:
            self._stats = message.stats
            self._num_adds_applied = message.num_adds_applied
            items: list[tuple[str, Any]] = [(w.request_id, self._decoder.decode(w)) for w in message.outputs]
            items += [(e.request_id, _error_from(e.error_type, e.message, e.hint)) for e in message.errors]
            for e in message.errors:
                self._decoder.forget(e.request_id)
            for request_id, item in items:
                stream = self._streams.get(request_id)
                if stream is not None:  # None: its consumer left and already sent the abort
                    deliveries.setdefault(stream.loop, []).append((stream.queue, item))
        for loop, batch in deliveries.items():
            try:
                loop.call_soon_threadsafe(_put_all, batch)
            except RuntimeError:  # that event loop is closed: its requests have no reader, free their blocks
                for queue, item in batch:
                    if isinstance(item, RequestOutput) and not item.finished:
                        self.abort(item.request_id)

    def _kill(self) -> None:
        self._core.kill()

    # ---- the step watchdog --------------------------------------------------------------------------------------
    def _note_work_begins(self) -> None:
        """Under _lock, before work is added: after an idle spell the core's silence so far was not a stall."""
        if not self._streams and not self._lora_calls:
            self._last_progress = time.monotonic()

    def _watch_progress(self, limit_s: float) -> None:
        """Work in flight and no message from the core for limit_s (it sends one every step) means the core is
        stuck: it is named with its run state, asked for its threads' stacks (into the log) and killed. The reader
        then fails the open streams naming why, and `vdeploy serve` exits 1 so that a supervisor restarts it."""
        while not self._watch_stop.wait(_WATCH_PERIOD_S):
            with self._lock:
                in_flight = len(self._streams) + len(self._lora_calls)
            silent = time.monotonic() - self._last_progress
            if not in_flight or silent < limit_s or self._closing or self._error is not None:
                continue
            state = self._core.state()
            self._stall = (f"no step came back in {silent:.0f} s with {in_flight} request(s) in flight"
                           + (f" (the process was {state})" if state in STUCK_STATES else "")
                           + f"; stopped by the step watchdog (--step-timeout {self.config.parallel.step_timeout_s:g})")
            logger.error("%s made no progress: %s", self._core.label, self._stall)
            if state == "running":
                self._core.dump_stacks()
                self._watch_stop.wait(1.0)  # faulthandler writes from the signal handler: give it a moment
            self._core.kill(self._stall)
            return


def _put_all(batch: list[tuple[asyncio.Queue, Any]]) -> None:
    for queue, item in batch:
        queue.put_nowait(item)
