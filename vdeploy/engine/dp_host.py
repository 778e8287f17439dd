"""`vdeploy worker-host` in a data-parallel job: this node's replicas, each an engine-core process listening for
node 0's API server (vdeploy/engine/core_process.py --listen-fd).

The host binds one TCP socket per replica on the address the operator gave (or this node's address on the route to
node 0), hands each to its replica process, announces the addresses in the rendezvous store, then keeps watch: it
beats its heartbeat, names a replica that dies (the others keep serving), and stops them all when node 0 ends the
job or cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

from vdeploy.config import EngineConfig, ParallelConfig
from vdeploy.engine.core_endpoint import ReplicaAddress, describe_exit
from vdeploy.engine.data_parallel import replica_devices, visible_gpus
from vdeploy.engine.dp_auth import secret_key
from vdeploy.engine.dp_nodes import bind_listeners, listen_address, local_replica_count, publish_replicas
from vdeploy.executor.base import ExecutorError

_WATCH_S = 0.2


class StopReplicas(Exception):
    """Raised by the host's poll when the job ended (reason "shutdown": cleanly)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def run_replica_host(store, engine_config: EngineConfig, mine: ParallelConfig, model_path: str, node_rank: int,
                     master_addr: str, device: str | None, poll: Callable[[], None],
                     status: Callable[[str], None]) -> None:
    """Serve this node's replicas until node 0 shuts them down. `engine_config`: node 0's (from the store);
    `mine`: this node's own data-parallel settings (its replica count, listen address, ports, secret). `poll`
    raises StopReplicas when the job ends. Raises ExecutorError when a replica failed or node 0 vanished."""
    secret = mine.dp_secret or ""
    secret_key(secret, where="--dp-secret / VDEPLOY_DP_SECRET of this worker host")
    parallel = replace(engine_config.parallel, data_parallel_size_local=mine.data_parallel_size_local)
    count = local_replica_count(parallel, parallel.nnodes)
    host = listen_address(mine, master_addr)
    listeners = bind_listeners(host, count, mine.data_parallel_rpc_port)
    addresses = [ReplicaAddress(node_rank, host, sock.getsockname()[1]) for sock in listeners]
    visible = visible_gpus(replace(engine_config, device=device or engine_config.device))
    procs: list[subprocess.Popen] = []
    try:
        for k, sock in enumerate(listeners):
            env = {**os.environ, **replica_devices(engine_config, k, visible), "VDEPLOY_DP_SECRET": secret}
            command = [sys.executable, "-m", "vdeploy.engine.core_process", "--listen-fd", str(sock.fileno()),
                       "--model", model_path, *(["--device", device] if device else [])]
            procs.append(subprocess.Popen(command, pass_fds=(sock.fileno(),), env=env))
    except BaseException:
        _stop(procs)
        raise
    finally:
        for sock in listeners:  # each replica holds its own copy of its socket
            sock.close()
    try:
        publish_replicas(store, node_rank, addresses)
        status(f"node {node_rank}: {count} replica(s) listening on "
               + ", ".join(f"{a.host}:{a.port}" for a in addresses))
        failures = _watch(procs, addresses, poll, node_rank, status)
    except StopReplicas as stopped:
        _stop(procs)
        if stopped.reason != "shutdown":
            raise ExecutorError(f"node {node_rank}: the job stopped: {stopped.reason}") from None
        return
    finally:
        _stop(procs)
    if failures:
        raise ExecutorError(f"node {node_rank}: " + "; ".join(failures),
                            hint="node 0 served the other replicas meanwhile; see the replica's log above")


def _watch(procs: list[subprocess.Popen], addresses: list[ReplicaAddress], poll: Callable[[], None],
           node_rank: int, status: Callable[[str], None]) -> list[str]:
    """Until every replica exited: the ones that failed, in words (each named as it happens)."""
    ended: set[int] = set()
    failures: list[str] = []
    while len(ended) < len(procs):
        poll()
        for k, proc in enumerate(procs):
            code = proc.poll()
            if code is None or k in ended:
                continue
            ended.add(k)
            if code != 0:
                where = f"{addresses[k].host}:{addresses[k].port}"
                failures.append(f"the replica at {where} (pid {proc.pid}) {describe_exit(code)}")
                status(f"node {node_rank}: {failures[-1]}; the other replicas keep serving")
        time.sleep(_WATCH_S)
    return failures


def _stop(procs: list[subprocess.Popen]) -> None:
    """Kill what still runs (replicas ignore SIGTERM and SIGINT: they only stop on node 0's word, or by force)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait()
