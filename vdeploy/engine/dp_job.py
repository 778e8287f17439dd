"""Node 0's side of a data-parallel job across nodes: it hosts the rendezvous store at --master-addr:--master-port
(the same launch as tensor / pipeline parallelism across nodes), publishes the engine configuration there for the
other nodes' `vdeploy worker-host`, learns where their replicas listen, connects to each (HMAC handshake) and then
watches the nodes' heartbeats: a node that stops beating or reports a failure has its replicas cut, naming it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.core_endpoint import ReplicaAddress, RemoteCore
from vdeploy.engine.dp_auth import AuthenticationError, secret_key
from vdeploy.engine.dp_nodes import check_total, local_replica_count, wait_replicas
from vdeploy.errors import ConfigError

logger = logging.getLogger(__name__)

_WATCH_S = 0.5


class NodeJob:
    """The store, the node link and the secret of one multi-node data-parallel job, held by node 0's front-end."""

    def __init__(self, config: EngineConfig, model_config: ModelConfig):
        from vdeploy.distributed.rendezvous import DEFAULT_TIMEOUT, host_store, launch_topology
        from vdeploy.executor.node_link import NodeLink

        topology = launch_topology(config.parallel)
        if topology.node_rank != 0:
            raise ConfigError(f"node rank {topology.node_rank} runs `vdeploy worker-host`, not the server",
                              hint="only node 0 serves; see docs/parallelism.md")
        if not topology.master_port:
            raise ConfigError("data parallelism across nodes needs --master-port (or MASTER_PORT)",
                              hint="pick a port open between the nodes, e.g. 29500")
        self.nnodes, self.master = topology.nnodes, f"{topology.master_addr}:{topology.master_port}"
        self.key = secret_key(config.parallel.dp_secret, where="--dp-secret / VDEPLOY_DP_SECRET of node 0")
        self.local_count = local_replica_count(config.parallel, self.nnodes)
        self.timeout_s = DEFAULT_TIMEOUT.total_seconds()
        try:
            self.store = host_store(topology.master_addr, topology.master_port, topology.nnodes)
        except RuntimeError as e:  # DistNetworkError: the port is taken or the address is not ours
            raise ConfigError(f"cannot host the rendezvous store at {self.master}: {e}",
                              hint="choose a free --master-port and an address of this node for --master-addr"
                              ) from None
        self.link = NodeLink(self.store, 0, self.nnodes)
        self.link.publish_config(config, model_config)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def remote_addresses(self, size: int) -> list[ReplicaAddress]:
        """Every other node's replica addresses, in node order, once each node announced them."""
        from vdeploy.executor.node_link import NodeLost
        from vdeploy.executor.base import ExecutorError

        def check() -> None:
            try:
                self.link.check_peers()
            except NodeLost as lost:
                raise ExecutorError(lost.message, hint="see that node's `vdeploy worker-host` output") from None

        logger.info("waiting for the replicas of %d other node(s) (rendezvous %s)", self.nnodes - 1, self.master)
        per_node = {n: wait_replicas(self.store, n, self.timeout_s, check) for n in range(1, self.nnodes)}
        check_total(size, {0: self.local_count, **{n: len(a) for n, a in per_node.items()}})
        return [address for n in sorted(per_node) for address in per_node[n]]

    def connect(self, address: ReplicaAddress, label: str) -> RemoteCore:
        from vdeploy.executor.base import ExecutorError

        try:
            return RemoteCore(address, self.key)
        except AuthenticationError as e:
            raise ExecutorError(f"{label}: refused: {e}",
                                hint="every node needs the same VDEPLOY_DP_SECRET (or --dp-secret)") from None
        except OSError as e:
            raise ExecutorError(f"{label}: cannot connect: {e}",
                                hint="check --dp-listen-address of that node and the firewall") from None

    def watch(self, on_node_lost: Callable[[int, str], None]) -> None:
        """Watch the other nodes in a thread until close(): on_node_lost(node, why) once per node lost."""
        from vdeploy.executor.node_link import NodeLost

        def loop() -> None:
            while not self._stop.wait(_WATCH_S):
                try:
                    self.link.check_peers()
                except NodeLost as lost:
                    self.link.forget(lost.node)
                    logger.error("%s; its replicas are out, the others keep serving", lost.message)
                    on_node_lost(lost.node, lost.message)
                except Exception:  # noqa: BLE001 - the store is ours; it only fails while we shut down
                    return

        self._watcher = threading.Thread(target=loop, name="vdeploy-dp-node-watch", daemon=True)
        self._watcher.start()

    def close(self, reason: str) -> None:
        """Stop watching and tell every worker host the job ended (they stop whatever replicas are left)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        self.link.abort(reason)
