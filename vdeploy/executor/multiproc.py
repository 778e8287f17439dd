"""Tensor parallelism on one host: one spawned process per rank, torch.distributed (NCCL on GPUs, gloo on CPU)
between them, a pipe per rank for control.

The engine process holds no process group (two engines in one process must not share torch.distributed's default
group), only the rendezvous store on an OS-chosen port. Every wait watches the ranks' pipes and their process
sentinels together, so a rank that raises or dies turns into an ExecutorError within moments, after which every
rank is terminated: no hang, no orphan.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
import weakref
from multiprocessing.connection import Connection, wait
from typing import NoReturn

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.rendezvous import RendezvousSpec, host_store, launch_topology
from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput
from vdeploy.errors import ConfigError
from vdeploy.executor.base import Executor, ExecutorError
from vdeploy.executor.control import (
    EXECUTE,
    SHUTDOWN,
    PayloadTooLargeError,
    RankCall,
    RankReply,
    UserErrorInfo,
    decode,
    encode,
)
from vdeploy.executor.rank_process import RankLaunch, run_rank
from vdeploy.worker.device import resolve_device_type

logger = logging.getLogger(__name__)

GRACEFUL_EXIT_S = 5.0  # after a shutdown call, before terminate
TERMINATE_EXIT_S = 2.0  # after terminate (SIGTERM), before kill (SIGKILL)


class MultiProcExecutor(Executor):
    def __init__(
        self, engine_config: EngineConfig, model_config: ModelConfig, step_timeout_s: float | None = None
    ):
        super().__init__(engine_config, model_config)
        self.step_timeout_s = step_timeout_s  # None: wait as long as every rank is alive
        parallel = engine_config.parallel
        topology = launch_topology(parallel)
        if parallel.pipeline_parallel_size > 1:
            raise ConfigError("pipeline parallelism is not implemented yet", hint="see docs/parallelism.md")
        if topology.nnodes > 1:
            raise ConfigError(
                "multi-node serving is not implemented yet", hint="see docs/parallelism.md for the planned launch"
            )
        world_size = parallel.world_size
        device_type = resolve_device_type(engine_config)
        if device_type == "cuda":
            import torch

            if torch.cuda.device_count() < world_size:
                raise ConfigError(
                    f"--tp {world_size} needs {world_size} GPUs, {torch.cuda.device_count()} visible",
                    hint="lower --tp or check CUDA_VISIBLE_DEVICES",
                )
        self._store = host_store("127.0.0.1", None, world_size)
        spec = RendezvousSpec("127.0.0.1", self._store.port, world_size, "nccl" if device_type == "cuda" else "gloo")
        ctx = _process_context(device_type)
        self._procs: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._closed = False
        # terminate the ranks even if the engine forgets shutdown() (garbage collection, interpreter exit)
        self._finalizer = weakref.finalize(self, _stop_processes, self._procs, self._conns, False)
        try:
            for rank in range(world_size):
                launch = RankLaunch(rank, rank, world_size, spec, engine_config, model_config)
                parent_end, child_end = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=run_rank, args=(launch, child_end), name=f"vdeploy-rank{rank}",
                                   daemon=True)
                proc.start()
                child_end.close()  # only the child holds it now, so the parent sees EOF when the child dies
                self._procs.append(proc)
                self._conns.append(parent_end)
            self._wait_replies(list(range(world_size)), timeout=None)  # every rank joined and loaded its weights
        except BaseException:  # Ctrl-C or a failed start: no rank outlives the constructor
            if not self._closed:
                self._closed = True
                self._finalizer()
            raise
        logger.info("%d rank processes ready (%s, rendezvous port %d)", world_size, spec.backend, spec.port)

    @property
    def rank_pids(self) -> list[int]:
        """Process id of each rank (diagnostics, tests)."""
        return [proc.pid for proc in self._procs]

    # ---- Executor API ----------------------------------------------------------------------------------------

    def determine_num_kv_blocks(self) -> int:
        return min(self._call_all(RankCall("determine_num_kv_blocks")).values())

    def initialize_kv_cache(self, num_blocks: int) -> None:
        self._call_all(RankCall("initialize_kv_cache", (num_blocks,)))

    def execute(self, scheduler_output: SchedulerOutput) -> ModelRunnerOutput:
        self._send_all(RankCall(EXECUTE, (scheduler_output,)))
        return self._wait_replies([0], timeout=self.step_timeout_s)[0]

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _stop_processes(self._procs, self._conns, True)
        self._store = None

    # ---- control channel --------------------------------------------------------------------------------------

    def _call_all(self, call: RankCall) -> dict:
        self._send_all(call)
        return self._wait_replies(list(range(len(self._procs))), timeout=None)

    def _send_all(self, call: RankCall) -> None:
        if self._closed:
            raise ExecutorError("the executor has been shut down")
        try:
            payload = encode(call)
        except PayloadTooLargeError as e:
            raise ExecutorError(str(e), hint="lower --max-num-batched-tokens or --max-num-seqs") from None
        for rank, conn in enumerate(self._conns):
            try:
                conn.send_bytes(payload)
            except OSError:
                self._fail_dead(rank)

    def _wait_replies(self, ranks: list[int], timeout: float | None) -> dict:
        """Replies of `ranks`, watching every rank for errors and deaths meanwhile."""
        pending = set(ranks)
        values = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        sentinels = {proc.sentinel: rank for rank, proc in enumerate(self._procs)}
        readers = {conn: rank for rank, conn in enumerate(self._conns)}
        while pending:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready = wait(list(readers) + list(sentinels), timeout=remaining)
            if not ready:
                self._fail(f"rank(s) {sorted(pending)} gave no reply within {timeout:.0f} s")
            for obj in ready:  # pipes first: a rank that reported an error and then exited is read, not guessed
                if obj in readers:
                    rank = readers[obj]
                    try:
                        reply: RankReply = decode(obj.recv_bytes())
                    except (EOFError, OSError):
                        self._fail_dead(rank)
                    if not reply.ok:
                        self._fail(f"rank {rank} failed: {reply.error}", reply.traceback, reply.user_error)
                    if rank not in pending:
                        self._fail(f"rank {rank} sent an unexpected reply")
                    values[rank] = reply.value
                    pending.discard(rank)
            for obj in ready:
                if obj in sentinels and not self._conns[sentinels[obj]].poll():
                    self._fail_dead(sentinels[obj])
        return values

    def _fail_dead(self, rank: int) -> NoReturn:
        proc = self._procs[rank]
        proc.join(timeout=1.0)
        self._fail(f"rank {rank} (pid {proc.pid}) died with exit code {proc.exitcode}")

    def _fail(
        self, message: str, remote_traceback: str | None = None, user_error: UserErrorInfo | None = None
    ) -> NoReturn:
        """Terminate every rank at once (survivors may be stuck in a collective) and raise: the rank's own
        VdeployError when it raised one (bad config or checkpoint: the user's to fix), else ExecutorError."""
        if not self._closed:
            self._closed = True
            self._finalizer.detach()
            _stop_processes(self._procs, self._conns, False)
            self._store = None
        if user_error is not None:
            logger.debug("%s\n%s", message, remote_traceback)
            raise _rebuild_user_error(user_error) from None
        if remote_traceback:
            logger.error("%s\n%s", message, remote_traceback)
        raise ExecutorError(
            message,
            hint="all ranks were stopped; see the log for the rank's traceback" if remote_traceback else
            "all ranks were stopped; a killed rank is often out of memory (check dmesg)",
            remote_traceback=remote_traceback,
        )


def _rebuild_user_error(info: UserErrorInfo) -> Exception:
    import importlib

    try:
        cls = getattr(importlib.import_module(info.module), info.qualname)
        error = cls(info.message, hint=info.hint)
        error.exit_code = info.exit_code
        return error
    except Exception:  # noqa: BLE001 - an unusual subclass: keep the message and hint, lose the type
        return ExecutorError(info.message, hint=info.hint)


def _process_context(device_type: str):
    """spawn on GPUs (a rank must never inherit a CUDA context). On CPU, forkserver with torch preloaded: ranks
    fork from a server that imported torch once, instead of each importing it (seconds when ranks share few
    cores); the server imports nothing that touches CUDA or threads, so forking from it is safe."""
    if device_type == "cuda":
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # symbolic_shapes (with sympy, ~1 s) is imported lazily by the first meta-device op of model construction
    ctx.set_forkserver_preload(["torch", "torch.distributed", "torch.fx.experimental.symbolic_shapes",
                                "safetensors.torch", "rich.progress",
                                "vdeploy.executor.rank_process", "vdeploy.worker.model_runner",
                                "vdeploy.models.loader"])
    return ctx


def _stop_processes(procs: list, conns: list[Connection], graceful: bool) -> None:
    """Ask (graceful) or tell every rank to exit; SIGKILL whoever is left; never leaves a process behind."""
    if graceful:
        payload = encode(RankCall(SHUTDOWN))
        for conn in conns:
            try:
                conn.send_bytes(payload)
            except OSError:
                pass
        _join_all(procs, GRACEFUL_EXIT_S)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    _join_all(procs, TERMINATE_EXIT_S)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    for conn in conns:
        conn.close()


def _join_all(procs: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(timeout=max(deadline - time.monotonic(), 0.0))
