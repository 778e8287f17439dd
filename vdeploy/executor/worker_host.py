"""A node other than node 0 of a multi-node job: start this node's ranks and keep watch until the job ends.

It serves nothing itself. It joins the rendezvous store that node 0's engine hosts, takes the engine's exact
configuration from it (only the checkpoint path is local), starts its ranks (global ranks node_rank * ranks_per_node
onward), then watches them and the job: it bumps its heartbeat, records the first failure of one of its ranks for
node 0 to report, and stops its ranks when node 0 aborts the job or cannot be reached.

When node 0 runs data parallelism (--data-parallel-size > 1), this node hosts whole replicas instead of ranks of
node 0's engine: vdeploy.engine.dp_host starts them and node 0's API server connects to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from vdeploy.config import ParallelConfig
from vdeploy.distributed.rendezvous import (
    LaunchTopology,
    RendezvousSpec,
    connect_store,
    launch_topology,
)
from vdeploy.env.procfs import STUCK_STATES, process_state
from vdeploy.errors import ConfigError, VdeployError
from vdeploy.executor.base import ExecutorError
from vdeploy.executor.control import user_error_info
from vdeploy.executor.local_ranks import LocalRanks, RankFailure
from vdeploy.executor.multiproc import (
    check_local_devices,
    check_topology,
    pipeline_ready,
    rank_process_context,
    rebuild_user_error,
)
from vdeploy.executor.node_link import JobEnded, NodeFailure, NodeLink, StuckRank
from vdeploy.executor.rank_process import RankLaunch
from vdeploy.worker.device import resolve_device_type

logger = logging.getLogger(__name__)


def run_worker_host(model_path: str, parallel: ParallelConfig, *, device: str | None = None,
                    status: Callable[[str], None] = logger.info) -> None:
    """Run this node's ranks until the job ends. Returns after a clean shutdown of the job; raises ExecutorError
    (or the rank's own VdeployError) when a rank here fails, and ExecutorError when node 0 aborts or vanishes."""
    topology = launch_topology(parallel)
    if topology.nnodes < 2 or topology.node_rank == 0:
        raise ConfigError("worker-host runs the ranks of a node other than node 0 of a multi-node job",
                          hint="pass --nnodes N (N > 1) and --node-rank 1..N-1; node 0 runs `vdeploy serve`")
    if not topology.master_port:
        raise ConfigError("worker-host needs --master-port (or MASTER_PORT): node 0's rendezvous port")
    status(f"node {topology.node_rank}: joining the job at {topology.master_addr}:{topology.master_port}")
    try:
        store = connect_store(topology.master_addr, topology.master_port, max(topology.world_size, topology.nnodes))
    except RuntimeError as e:  # DistStoreError / DistNetworkError after the rendezvous timeout
        raise ExecutorError(f"node 0 did not answer at {topology.master_addr}:{topology.master_port}: {e}",
                            hint="start `vdeploy serve ... --node-rank 0` there, and check the address, "
                                 "the port and the firewall") from None
    link = NodeLink(store, topology.node_rank, topology.nnodes)
    try:
        if not link.claim_node():
            raise ConfigError(f"node {topology.node_rank} was started twice: another `vdeploy worker-host` already "
                              f"joined the job at {topology.master_addr}:{topology.master_port} as node "
                              f"{topology.node_rank}",
                              hint="give each node its own --node-rank (1..nnodes-1)")
        engine_config, model_config = link.wait_config()
        _check_same_launch(engine_config.parallel, parallel, topology)
        data_parallel = engine_config.parallel.data_parallel_size > 1
        if data_parallel:
            from vdeploy.engine.dp_host import ReplicaHost

            replicas = ReplicaHost(store, engine_config, parallel, model_path, topology.node_rank,
                                   topology.master_addr, device, status)
        else:
            ranks, launches = _start_ranks(engine_config, model_config, model_path, parallel, topology, device)
    except VdeployError as e:  # node 0 would otherwise wait for this node's ranks until the rendezvous timeout
        link.report_failure(NodeFailure(topology.node_rank, e.message, user_error=user_error_info(e)))
        raise
    if data_parallel:
        _watch_replicas(replicas, link, topology.node_rank, status)
        return
    first, last = launches[0].rank, launches[-1].rank
    names = f"rank {first}" if first == last else f"ranks {first}-{last}"
    poll = _watcher(link, ranks)
    try:
        ranks.wait_replies(list(range(len(launches))), poll=poll)
        status(f"node {topology.node_rank}: {names} ready")
        ranks.watch_until_exit(poll=poll)
        status(f"node {topology.node_rank}: the job shut down")
    except RankFailure as failure:
        link.report_failure(NodeFailure(topology.node_rank, failure.message, failure.remote_traceback,
                                        failure.user_error))
        ranks.stop(None)
        if failure.user_error is not None:
            raise rebuild_user_error(failure.user_error) from None
        raise ExecutorError(f"node {topology.node_rank}: {failure.message}",
                            hint="node 0 stops the whole job", remote_traceback=failure.remote_traceback) from None
    except JobEnded as ended:
        ranks.stop(None)
        if ended.reason != "shutdown":
            raise ExecutorError(f"node {topology.node_rank}: the job stopped: {ended.reason}") from None
        status(f"node {topology.node_rank}: the job shut down")
    except BaseException:  # Ctrl-C, or an unexpected error: leave no rank behind; peers notice the closed links
        ranks.stop(None)
        raise


def _watch_replicas(replicas, link: NodeLink, node_rank: int, status: Callable[[str], None]) -> None:
    """Until node 0 ends the job. A replica that dies is node 0's to route around (its connection closed), so
    nothing goes into the failure record: that would take this node's other replicas out too."""
    try:
        replicas.watch(_watcher(link))
    except ExecutorError as e:
        raise ExecutorError(f"node {node_rank}: {e.message}", hint=e.hint) from None
    status(f"node {node_rank}: the job shut down")


def _check_same_launch(theirs: ParallelConfig, parallel: ParallelConfig, topology: LaunchTopology) -> None:
    if (theirs.tensor_parallel_size, theirs.pipeline_parallel_size, theirs.nnodes) != (
            parallel.tensor_parallel_size, parallel.pipeline_parallel_size, topology.nnodes):
        raise ConfigError(
            f"node 0 runs --tp {theirs.tensor_parallel_size} --pp {theirs.pipeline_parallel_size} on "
            f"{theirs.nnodes} nodes; this node was given --tp {parallel.tensor_parallel_size} "
            f"--pp {parallel.pipeline_parallel_size} --nnodes {topology.nnodes}",
            hint="start every node with the same --tp, --pp and --nnodes")


def _start_ranks(engine_config, model_config, model_path: str, parallel: ParallelConfig, topology: LaunchTopology,
                 device: str | None) -> tuple[LocalRanks, list[RankLaunch]]:
    theirs = engine_config.parallel
    # node 0's settings, this node's checkpoint path (and device choice when given)
    engine_config = pipeline_ready(replace(engine_config, model=model_path, tokenizer=None,
                                           device=device or engine_config.device,
                                           parallel=replace(theirs, node_rank=topology.node_rank)))
    check_topology(engine_config, model_config, topology)
    device_type = resolve_device_type(engine_config)
    check_local_devices(device_type, topology.ranks_per_node)
    spec = RendezvousSpec(topology.master_addr, topology.master_port, topology.world_size,
                          "nccl" if device_type == "cuda" else "gloo", theirs.pipeline_parallel_size)
    launches = [RankLaunch(topology.global_rank(local), local, topology.ranks_per_node, spec, engine_config,
                           model_config, relay=True) for local in range(topology.ranks_per_node)]
    return LocalRanks(launches, rank_process_context(device_type)), launches


def _watcher(link: NodeLink, ranks: LocalRanks | None = None) -> Callable[[], None]:
    """The host's poll while it waits: heartbeat, node 0's abort, and (with `ranks`) which ranks are stuck, so node
    0's watchdogs can name a rank of this node."""
    stuck_since: dict[int, float] = {}  # global rank -> when this host first saw it stuck

    def poll() -> None:
        try:
            link.heartbeat()
            if ranks is not None:
                link.publish_stuck(_stuck_ranks(ranks, stuck_since))
            reason = link.aborted()
        except Exception as e:  # noqa: BLE001 - the store lives in node 0's engine process
            raise JobEnded(f"node 0 cannot be reached ({e.__class__.__name__}: {e})") from None
        if reason is not None:
            raise JobEnded(reason)

    return poll


def _stuck_ranks(ranks: LocalRanks, stuck_since: dict[int, float]) -> list[StuckRank]:
    """This node's ranks that are stopped or in uninterruptible sleep, and for how long (`stuck_since` is updated:
    a rank that runs again starts over)."""
    now = time.monotonic()
    states = {launch.rank: (pid, process_state(pid)) for launch, pid in zip(ranks.launches, ranks.pids)}
    for rank, (_, state) in states.items():
        if state not in STUCK_STATES:
            stuck_since.pop(rank, None)
        else:
            stuck_since.setdefault(rank, now)
    return [StuckRank(rank, states[rank][0], states[rank][1], now - since) for rank, since in stuck_since.items()]
