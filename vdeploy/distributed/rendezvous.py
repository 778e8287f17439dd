"""Where the ranks of one engine meet: a torch.distributed TCPStore on a free port, never a fixed one.

Single node: the executor process hosts the store on port 0 (the OS picks a free port, so two engines on one host
never collide) and passes (host, port) to the worker processes it spawns. Multi-node (see docs/parallelism.md):
node 0 hosts the store at --master-addr/--master-port, or torchrun's MASTER_ADDR/MASTER_PORT; every rank of every
node joins it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass

from vdeploy.config import ParallelConfig
from vdeploy.distributed.parallel_state import ParallelState

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)
CONTROL_TIMEOUT = datetime.timedelta(days=365)


@dataclass(frozen=True)
class RendezvousSpec:
    host: str
    port: int
    world_size: int
    backend: str  # "nccl" | "gloo"
    pipeline_parallel_size: int = 1

    @property
    def tensor_parallel_size(self) -> int:
        return self.world_size // self.pipeline_parallel_size


@dataclass(frozen=True)
class LaunchTopology:
    """Where this process sits among all ranks (torchrun's vocabulary)."""

    nnodes: int
    node_rank: int
    ranks_per_node: int
    master_addr: str
    master_port: int | None  # None: pick a free port (single node only)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.ranks_per_node

    def global_rank(self, local_rank: int) -> int:
        return self.node_rank * self.ranks_per_node + local_rank


def launch_topology(parallel: ParallelConfig, environ: dict[str, str] | None = None) -> LaunchTopology:
    """ParallelConfig's nnodes/node_rank/master_addr/master_port, filled from torchrun's environment variables
    (WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT) where the config leaves them unset."""
    env = os.environ if environ is None else environ
    nnodes = parallel.nnodes
    ranks_per_node = parallel.world_size // max(nnodes, 1)
    if "LOCAL_WORLD_SIZE" in env and "WORLD_SIZE" in env and nnodes == 1:
        nnodes = max(int(env["WORLD_SIZE"]) // max(int(env["LOCAL_WORLD_SIZE"]), 1), 1)
        ranks_per_node = parallel.world_size // nnodes
    node_rank = parallel.node_rank or int(env.get("GROUP_RANK", env.get("NODE_RANK", "0")))
    master_addr = parallel.master_addr or env.get("MASTER_ADDR") or "127.0.0.1"
    port_text = env.get("MASTER_PORT")
    master_port = parallel.master_port or (int(port_text) if port_text else None)
    return LaunchTopology(nnodes, node_rank, ranks_per_node, master_addr, master_port)


def host_store(host: str, port: int | None, world_size: int, environ: dict[str, str] | None = None):
    """The master TCPStore, listening on `host` only. port None or 0: the OS chooses a free port (read it back
    from `.port`).

    The store has no authentication: whoever reaches it can join the process group as a rank or write the job's
    keys. torch's TCPStore listens on every interface whatever `host` says, so the socket is bound here (127.0.0.1
    on one node, --master-addr across nodes) and handed over. Under torchrun the agent already hosts a store at
    MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE): connect to it instead of binding the same port twice."""
    import torch.distributed as dist

    env = os.environ if environ is None else environ
    if port and env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
        return connect_store(host, port, world_size)
    fd = listen_socket(host, port or 0)
    try:
        return dist.TCPStore(host, port or 0, world_size, is_master=True, timeout=DEFAULT_TIMEOUT,
                             wait_for_workers=False, master_listen_fd=fd)
    except BaseException:
        with contextlib.suppress(OSError):  # the store owns (and closes) the socket only once it exists
            os.close(fd)
        raise


def listen_socket(host: str, port: int) -> int:
    """The file descriptor of a TCP socket listening on `host`:`port` (the first address `host` resolves to).
    RuntimeError naming the address when it cannot be bound (taken, or not an address of this machine): the same
    error class torch raises, so callers' handling of a taken port stays as it is."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise RuntimeError(f"cannot resolve {host}: {e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a store of a job that just ended
        try:
            sock.bind(address)
        except OSError as e:
            # --master-addr may be an address other nodes reach this one by without being one of its own (a
            # Kubernetes service, NAT): then every interface, as torch would, and said so; never for loopback
            if e.errno != errno.EADDRNOTAVAIL or ipaddress.ip_address(address[0]).is_loopback:
                raise
            logger.warning("%s is not an address of this machine: the rendezvous store listens on every interface "
                           "(port %d); keep that port closed to other networks", host, port)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        reason = os.strerror(e.errno).lower() if e.errno else str(e)
        raise RuntimeError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock.detach()


def connect_store(host: str, port: int, world_size: int, timeout: datetime.timedelta = DEFAULT_TIMEOUT):
    """A client of the master store (waits up to `timeout` for it to come up)."""
    import torch.distributed as dist

    return dist.TCPStore(host, port, world_size, is_master=False, timeout=timeout)


def init_rank(spec: RendezvousSpec, rank: int) -> ParallelState:
    """Join the process group of this engine as `rank` and return its ParallelState: ranks are laid out [pp][tp],
    one tensor-parallel group per pipeline stage.

    Called once per worker process; the default process group is per-process, so two engines never share one."""
    import torch.distributed as dist

    # NVLink SHARP multicast buffers are not available on the lent machines and hang NCCL init there
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    store = connect_store(spec.host, spec.port, spec.world_size)
    dist.init_process_group(
        backend=spec.backend, store=store, rank=rank, world_size=spec.world_size, timeout=DEFAULT_TIMEOUT
    )
    tp, pp = spec.tensor_parallel_size, spec.pipeline_parallel_size
    pp_rank, tp_rank = divmod(rank, tp)
    if pp == 1:
        group = dist.group.WORLD
    else:
        # every rank creates every stage's group, in the same order (new_group is collective over the world)
        groups = [dist.new_group(list(range(s * tp, (s + 1) * tp))) if tp > 1 else None for s in range(pp)]
        group = groups[pp_rank]
    return ParallelState(tp_rank=tp_rank, tp_size=tp, group=group, pp_rank=pp_rank, pp_size=pp)


def new_control_group():
    """A gloo group of every rank for control messages across nodes (called by every rank, after init_rank).
    Its timeout is effectively unbounded: ranks wait in it while the engine is idle, and a dead peer is noticed
    through its closed connection, not through a timeout."""
    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def destroy_rank() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
