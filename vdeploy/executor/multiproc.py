"""Tensor and pipeline parallelism: one process per rank, torch.distributed (NCCL on GPUs, gloo on CPU) between
them, ranks laid out [pp][tp].

Single node: a pipe per rank carries each call (the same bytes to every rank). Multi-node: this process is node 0;
it hosts the rendezvous store at --master-addr:--master-port, publishes its configuration there for the other
nodes' `vdeploy worker-host`, and talks only to rank 0, which relays every call to all ranks over a gloo group
(vdeploy.executor.control_relay). Peer nodes are watched through the store (vdeploy.executor.node_link).

The engine process holds no process group (two engines in one process must not share torch.distributed's default
group), only the rendezvous store. Every wait watches the ranks' pipes and their process sentinels together, so a
rank that raises or dies turns into an ExecutorError within moments, after which every rank is terminated: no
hang, no orphan.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import weakref
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.rendezvous import (
    LaunchTopology,
    RendezvousSpec,
    host_store,
    launch_topology,
)
from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput
from vdeploy.errors import ConfigError
from vdeploy.executor.base import Executor, ExecutorError
from vdeploy.executor.control import (
    EXECUTE,
    PayloadTooLargeError,
    RankCall,
    UserErrorInfo,
    encode,
)
from vdeploy.executor.local_ranks import LocalRanks, RankFailure
from vdeploy.executor.node_link import NodeLink, NodeLost, StuckRank, is_peer_loss
from vdeploy.executor.rank_process import RankLaunch
from vdeploy.engine.step_handle import StepHandle
from vdeploy.env.procfs import STUCK_STATES, process_state
from vdeploy.worker.device import resolve_device_type

logger = logging.getLogger(__name__)


class MultiProcExecutor(Executor):
    def __init__(
        self, engine_config: EngineConfig, model_config: ModelConfig, step_timeout_s: float | None = None
    ):
        topology = launch_topology(engine_config.parallel)
        # the resolved topology (flags or torchrun's environment) is what the other nodes receive
        engine_config = pipeline_ready(replace(engine_config, parallel=replace(
            engine_config.parallel, nnodes=topology.nnodes, node_rank=topology.node_rank,
            master_addr=topology.master_addr, master_port=topology.master_port)))
        super().__init__(engine_config, model_config)
        # the step watchdog (None or <= 0: wait as long as every rank is alive)
        timeout = engine_config.parallel.step_timeout_s if step_timeout_s is None else step_timeout_s
        self.step_timeout_s = timeout if timeout and timeout > 0 else None
        idle = engine_config.parallel.idle_timeout_s
        self.idle_timeout_s = idle if idle and idle > 0 else None
        self._stuck_since: dict[int, float] = {}  # global rank -> when the idle check first saw it stuck
        check_topology(engine_config, model_config, topology)
        if topology.node_rank != 0:
            raise ConfigError(f"node rank {topology.node_rank} runs `vdeploy worker-host`, not the engine",
                              hint="only node 0 serves; see docs/parallelism.md")
        device_type = resolve_device_type(engine_config)
        check_local_devices(device_type, topology.ranks_per_node)
        self.multi_node = topology.nnodes > 1
        host = topology.master_addr if self.multi_node else "127.0.0.1"
        try:
            store = host_store(host, topology.master_port if self.multi_node else None, topology.world_size)
        except RuntimeError as e:  # DistNetworkError: the operator's port is taken or the address is not ours
            raise ConfigError(f"cannot host the rendezvous store at {host}:{topology.master_port}: {e}",
                              hint="choose a free --master-port and an address of this node for --master-addr"
                              ) from None
        self._res = _Resources(self.multi_node, store=store)
        self._link: NodeLink | None = None
        if self.multi_node:
            self._link = self._res.link = NodeLink(store, 0, topology.nnodes)
            self._link.publish_config(engine_config, model_config)
        spec = RendezvousSpec(host, store.port, topology.world_size,
                              "nccl" if device_type == "cuda" else "gloo",
                              engine_config.parallel.pipeline_parallel_size)
        parallel = engine_config.parallel
        self._driver_rank = (parallel.pipeline_parallel_size - 1) * parallel.tensor_parallel_size
        launches = [RankLaunch(rank, rank, topology.ranks_per_node, spec, engine_config, model_config,
                               relay=self.multi_node) for rank in range(topology.ranks_per_node)]
        self._closed = False
        self._ranks: LocalRanks | None = None
        # terminate the ranks even if the engine forgets shutdown() (garbage collection, interpreter exit)
        self._finalizer = weakref.finalize(self, _stop_ranks, self._res, None)
        try:
            self._ranks = self._res.ranks = LocalRanks(launches, rank_process_context(device_type))
            if self.multi_node:
                logger.info("waiting for %d other node(s) at %s:%d", topology.nnodes - 1, host, spec.port)
            self._wait(list(range(len(launches))), timeout=None)  # every local rank joined and loaded its weights
        except BaseException:  # Ctrl-C or a failed start: no rank outlives the constructor
            if not self._closed:
                self._closed = True
                self._finalizer()
            raise
        logger.info("%d local rank processes ready (%s, rendezvous port %d)", len(launches), spec.backend, spec.port)

    @property
    def rank_pids(self) -> list[int]:
        """Process id of each local rank (diagnostics, tests)."""
        return self._ranks.pids if self._ranks is not None else []

    # ---- Executor API ----------------------------------------------------------------------------------------

    def determine_num_kv_blocks(self) -> int:
        return min(self._call_all(RankCall("determine_num_kv_blocks")).values())

    def initialize_kv_cache(self, num_blocks: int) -> None:
        self._call_all(RankCall("initialize_kv_cache", (num_blocks,)))

    def load_lora(self, slot: int, adapter) -> None:
        self._call_all(RankCall("load_lora", (slot, adapter)))

    def execute(self, scheduler_output: SchedulerOutput) -> ModelRunnerOutput:
        return self.execute_async(scheduler_output).result()

    def execute_async(self, scheduler_output: SchedulerOutput) -> StepHandle:
        """Sends the step to every rank; the handle reads the driver's reply. Pipes keep order, so a rank gets
        step N+1 while it still runs step N, and the replies come back in launch order."""
        call = RankCall(EXECUTE, (scheduler_output,))
        answering = 0 if self.multi_node else self._driver_rank  # rank 0 relays the driver's output
        self._send(call, [0] if self.multi_node else list(range(len(self._ranks.procs))))
        return _DriverReply(self, answering)

    def check_idle(self) -> None:
        """The idle watchdog: a rank that died or raised surfaces now, not with the next request; one that stays
        stopped or in uninterruptible sleep for idle_timeout_s is named and every rank stopped."""
        if self._closed:
            return
        try:
            self._ranks.check()
            if self._link is not None:
                self._link.check_peers()
        except RankFailure as failure:
            self._fail(failure)
        except NodeLost as lost:
            self._fail(_failure_of(lost))
        if self.idle_timeout_s is None:
            return
        import time

        now = time.monotonic()
        states = rank_states(self._ranks)
        self._stuck_since = {rank: self._stuck_since.get(rank, now) for rank, state in states.items()
                             if state in STUCK_STATES}
        overdue = [rank for rank, since in self._stuck_since.items() if now - since >= self.idle_timeout_s]
        remote = self._link.stuck_ranks() if self._link is not None else []  # as their hosts timed them
        if overdue or any(stuck.stuck_s >= self.idle_timeout_s for _, stuck in remote):
            failure = RankFailure(f"while idle for {self.idle_timeout_s:.0f} s: "
                                  f"{describe_stuck_ranks(self._ranks, remote)}")
            failure.timed_out = True
            self._fail(failure)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _stop_ranks(self._res, "shutdown")

    # ---- control channel --------------------------------------------------------------------------------------

    def _call_all(self, call: RankCall) -> dict[int, Any]:
        """Every rank's answer by global rank."""
        if self.multi_node:  # rank 0 gathers every node's answers
            self._send(call, [0])
            return self._wait([0], timeout=None)[0]
        indices = list(range(len(self._ranks.procs)))
        self._send(call, indices)
        return self._wait(indices, timeout=None)

    def _send(self, call: RankCall, indices: list[int]) -> None:
        if self._closed:
            raise ExecutorError("the executor has been shut down")
        try:
            payload = encode(call)
        except PayloadTooLargeError as e:
            raise ExecutorError(str(e), hint="lower --max-num-batched-tokens or --max-num-seqs") from None
        try:
            self._ranks.send(payload, indices)
        except RankFailure as failure:
            self._fail(failure)

    def _wait(self, indices: list[int], timeout: float | None) -> dict[int, Any]:
        poll = self._link.check_peers if self._link is not None else None
        try:
            return self._ranks.wait_replies(indices, timeout, poll=poll)
        except RankFailure as failure:
            if failure.timed_out:
                remote = self._link.stuck_ranks() if self._link is not None else []
                failure.message = (f"no step finished within {timeout:.0f} s: "
                                   f"{describe_stuck_ranks(self._ranks, remote)}")
            self._fail(failure)
        except NodeLost as lost:
            self._fail(_failure_of(lost))

    def _fail(self, failure: RankFailure) -> NoReturn:
        """Terminate every rank at once (survivors may be stuck in a collective) and raise: the rank's own
        VdeployError when it raised one (bad config or checkpoint: the user's to fix), else ExecutorError."""
        if (self._link is not None and not isinstance(failure.__cause__, NodeLost)
                and is_peer_loss(failure.message)):
            # a local rank that lost its peers usually reports first; name the node that caused it when it shows
            lost = self._link.explain_failure()
            if lost is not None:
                local = failure.message
                failure = _failure_of(lost)
                failure.message += f" (then {local})"
        if not self._closed:
            self._closed = True
            self._finalizer.detach()
            _stop_ranks(self._res, None, abort_reason=failure.message)
        if failure.user_error is not None:
            logger.debug("%s\n%s", failure.message, failure.remote_traceback)
            raise rebuild_user_error(failure.user_error) from None
        if failure.remote_traceback:
            logger.error("%s\n%s", failure.message, failure.remote_traceback)
        if failure.timed_out:
            hint = ("all ranks were stopped; if steps of this size really take that long, raise --step-timeout "
                    "(VDEPLOY_STEP_TIMEOUT_S; 0 turns the watchdog off)")
        elif isinstance(failure.__cause__, NodeLost):
            hint = "all ranks of every node were stopped; see that node's `vdeploy worker-host` output"
        elif failure.remote_traceback:
            hint = "all ranks were stopped; see the log for the rank's traceback"
        else:
            hint = "all ranks were stopped; a killed rank is often out of memory (check dmesg)"
        raise ExecutorError(failure.message, hint=hint, remote_traceback=failure.remote_traceback)


def rank_states(ranks: LocalRanks) -> dict[int, str]:
    """Global rank -> its process's run state in words (see vdeploy.env.procfs.process_state)."""
    return {launch.rank: process_state(pid) for launch, pid in zip(ranks.launches, ranks.pids)}


def describe_stuck_ranks(ranks: LocalRanks, remote: list[tuple[int, StuckRank]] = ()) -> str:
    """Which rank is to blame for a step that never ends: a stopped process (SIGSTOP, a debugger) or one in
    uninterruptible sleep is named, here or (`remote`, as other nodes' hosts reported them) on another node;
    otherwise every rank is alive and waiting (a hung collective)."""
    states = rank_states(ranks)
    stuck = [f"rank {rank} (pid {pid}) is {state}" for (rank, state), pid in zip(states.items(), ranks.pids)
             if state in STUCK_STATES]
    stuck += [f"node {node}: rank {r.rank} (pid {r.pid}) is {r.state}" for node, r in remote]
    if stuck:
        return "; ".join(stuck)
    return "every rank is alive but none answered (a hung collective or a deadlocked rank); ranks " + ", ".join(
        f"{rank} (pid {pid})" for rank, pid in zip(states, ranks.pids))


def pipeline_ready(engine_config: EngineConfig) -> EngineConfig:
    """Pipeline stages run eagerly (a decode CUDA graph would have to capture the stage-to-stage transfers)."""
    if engine_config.parallel.pipeline_parallel_size > 1 and not engine_config.enforce_eager:
        return replace(engine_config, enforce_eager=True)
    return engine_config


def check_topology(engine_config: EngineConfig, model_config: ModelConfig, topology: LaunchTopology) -> None:
    from vdeploy.models.pipeline_stage import pp_layer_range

    parallel = engine_config.parallel
    if parallel.world_size % topology.nnodes:
        raise ConfigError(f"--tp {parallel.tensor_parallel_size} x --pp {parallel.pipeline_parallel_size} ranks "
                          f"cannot be spread evenly over {topology.nnodes} nodes",
                          hint="use a world size (tp x pp) divisible by --nnodes")
    if not 0 <= topology.node_rank < topology.nnodes:
        raise ConfigError(f"--node-rank {topology.node_rank} is outside 0..{topology.nnodes - 1}")
    if topology.nnodes > 1 and not topology.master_port:
        raise ConfigError("a multi-node job needs --master-port (or MASTER_PORT)",
                          hint="pick a port open between the nodes, e.g. 29500")
    pp_layer_range(model_config.num_layers, 0, parallel.pipeline_parallel_size)  # enough layers for the stages


def check_local_devices(device_type: str, local_ranks: int) -> None:
    if device_type != "cuda":
        return
    import torch

    if torch.cuda.device_count() < local_ranks:
        raise ConfigError(
            f"{local_ranks} ranks on this node need {local_ranks} GPUs, {torch.cuda.device_count()} visible",
            hint="lower --tp / --pp, add nodes, or check CUDA_VISIBLE_DEVICES",
        )


def _failure_of(lost: NodeLost) -> RankFailure:
    info = lost.failure
    failure = RankFailure(lost.message, info.remote_traceback if info else None, info.user_error if info else None)
    failure.__cause__ = lost
    return failure


def rebuild_user_error(info: UserErrorInfo) -> Exception:
    """The rank's VdeployError again. Only vdeploy's own error classes are rebuilt: a failure record of another node
    arrives through the rendezvous store, which any network peer can write, and importing or calling whatever it
    names would run that peer's choice of code."""
    import importlib

    from vdeploy.errors import VdeployError

    try:
        if info.module.split(".")[0] != "vdeploy":
            raise TypeError(f"{info.module} is not a vdeploy module")
        cls = getattr(importlib.import_module(info.module), info.qualname)
        if not (isinstance(cls, type) and issubclass(cls, VdeployError)):
            raise TypeError(f"{info.module}.{info.qualname} is not a vdeploy error")
        error = cls(info.message, hint=info.hint)
        error.exit_code = info.exit_code
        return error
    except Exception:  # noqa: BLE001 - an unusual subclass: keep the message and hint, lose the type
        return ExecutorError(info.message, hint=info.hint)


def rank_process_context(device_type: str):
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


@dataclass
class _DriverReply:
    executor: MultiProcExecutor
    rank: int

    def result(self) -> ModelRunnerOutput:
        return self.executor._wait([self.rank], timeout=self.executor.step_timeout_s)[self.rank]


@dataclass
class _Resources:
    """What must be released even when the executor is garbage-collected without shutdown() (held by a
    weakref.finalize, so it must not reference the executor itself)."""

    multi_node: bool
    link: NodeLink | None = None
    ranks: LocalRanks | None = None
    store: Any = None


def _stop_ranks(res: _Resources, shutdown_reason: str | None, abort_reason: str | None = None) -> None:
    """Graceful (shutdown_reason set): ask the ranks to exit (in multi-node jobs rank 0 relays it to every node);
    else terminate at once. Other nodes are told through the store either way."""
    if res.link is not None and shutdown_reason is None:
        res.link.abort(abort_reason or "stopped")  # first: remote hosts stop their ranks while ours are stopped
    if res.ranks is not None:
        graceful = None
        if shutdown_reason is not None:
            graceful = [0] if res.multi_node else list(range(len(res.ranks.procs)))
        res.ranks.stop(graceful)
    if res.link is not None and shutdown_reason is not None:
        res.link.abort(shutdown_reason)
    res.store = None
