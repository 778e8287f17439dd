"""How the replicas of a data-parallel job are spread over the nodes of one multi-node launch, and how node 0 learns
where the other nodes' replicas listen.

Each node hosts whole replicas (a replica's tp x pp ranks never span nodes): data_parallel_size / nnodes of them,
or its own --data-parallel-size-local. Replica numbers follow the node order: node 0's first, then node 1's, …

Rendezvous store keys (next to vdeploy.executor.node_link's):
  dp/node/<n>/replicas   the addresses node n's replicas listen on (JSON list of ReplicaAddress)
The store is not authenticated, so these addresses are only where to knock: a replica is believed once it passed the
HMAC handshake (vdeploy/engine/dp_auth.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from vdeploy.config import ParallelConfig
from vdeploy.engine.core_endpoint import ReplicaAddress
from vdeploy.errors import ConfigError

_PREFIX = "vdeploy/dp/"
_POLL_S = 0.1


def local_replica_count(parallel: ParallelConfig, nnodes: int) -> int:
    """How many replicas this node hosts; ConfigError for a split that leaves replicas without a node."""
    size = parallel.data_parallel_size
    if parallel.data_parallel_size_local is not None:
        if parallel.data_parallel_size_local > size:
            raise ConfigError(f"--data-parallel-size-local {parallel.data_parallel_size_local} is more than "
                              f"--data-parallel-size {size}")
        return parallel.data_parallel_size_local
    if size % nnodes:
        raise ConfigError(
            f"--data-parallel-size {size} cannot be split evenly over --nnodes {nnodes} nodes "
            f"({size} / {nnodes} is not a whole number of replicas)",
            hint=f"use a multiple of {nnodes}, or give every node its own --data-parallel-size-local")
    return size // nnodes


def check_total(size: int, counts: dict[int, int]) -> None:
    """The nodes' replica counts (node rank -> count) must add up to --data-parallel-size."""
    if sum(counts.values()) != size:
        shares = ", ".join(f"node {n}: {c}" for n, c in sorted(counts.items()))
        raise ConfigError(f"the nodes host {sum(counts.values())} replicas ({shares}), --data-parallel-size is {size}",
                          hint="make the --data-parallel-size-local of every node add up to --data-parallel-size")


def listen_address(parallel: ParallelConfig, master_addr: str) -> str:
    """Where this node's replicas listen: --dp-listen-address, else this node's own address on the route to node 0
    (the interface node 0 can reach us by). Never the wildcard address: only the operator may open all interfaces."""
    if parallel.dp_listen_address:
        return parallel.dp_listen_address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((master_addr, 9))  # a UDP "connect" sends nothing: it only picks the route and source address
        return probe.getsockname()[0]


def bind_listeners(host: str, count: int, first_port: int | None) -> list[socket.socket]:
    """One listening TCP socket per replica: on first_port + i, or on free ports when first_port is None."""
    listeners: list[socket.socket] = []
    try:
        for i in range(count):
            port = first_port + i if first_port else 0
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
            listeners.append(sock)
    except OSError as e:
        for sock in listeners:
            sock.close()
        raise ConfigError(f"cannot listen for node 0 on {host}:{port}: {e}",
                          hint="pass an address of this node as --dp-listen-address and free ports as "
                               "--data-parallel-rpc-port") from None
    return listeners


def publish_replicas(store, node_rank: int, addresses: list[ReplicaAddress]) -> None:
    import msgspec

    store.set(f"{_PREFIX}node/{node_rank}/replicas", msgspec.json.encode(addresses))


def wait_replicas(store, node_rank: int, timeout_s: float, check: Callable[[], None]) -> list[ReplicaAddress]:
    """Node `node_rank`'s replica addresses, once its worker host announces them. `check` raises when the job
    failed meanwhile (a failure record, a lost node), so node 0 does not wait out the whole timeout."""
    from vdeploy.executor.base import ExecutorError
    from vdeploy.executor.node_link import decode_record

    key = f"{_PREFIX}node/{node_rank}/replicas"
    deadline = time.monotonic() + timeout_s
    while not store.check([key]):
        check()
        if time.monotonic() > deadline:
            raise ExecutorError(f"node {node_rank} announced no replicas within {timeout_s:.0f} s",
                                hint="start `vdeploy worker-host ... --node-rank "
                                     f"{node_rank}` there with the same --master-addr and --master-port")
        time.sleep(_POLL_S)
    addresses = decode_record(store.get(key), list[ReplicaAddress], f"node {node_rank}'s replica addresses")
    if any(a.node_rank != node_rank for a in addresses):
        raise ExecutorError(f"node {node_rank}'s replica addresses name another node")
    return addresses
