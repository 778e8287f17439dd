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
from vdeploy.engine.core_process import NODE0_GONE
from vdeploy.engine.data_parallel import replica_devices, visible_gpus
from vdeploy.engine.dp_auth import secret_key
from vdeploy.engine.dp_nodes import bind_listeners, listen_address, local_replica_count, publish_replicas
from vdeploy.executor.base import ExecutorError
from vdeploy.executor.node_link import JobEnded

_WATCH_S = 0.2
_EXIT_GRACE_S = 5.0


class ReplicaHost:
    """This node's replica processes, started and announced; watch() keeps them until the job ends."""

    def __init__(self, store, engine_config: EngineConfig, mine: ParallelConfig, model_path: str, node_rank: int,
                 master_addr: str, device: str | None, status: Callable[[str], None]):
        """engine_config: node 0's (from the store); mine: this node's own data-parallel settings (its replica
        count, listen address, ports, secret). Raises ConfigError before anything starts when they do not work."""
        secret = mine.dp_secret or ""
        secret_key(secret, where="--dp-secret / VDEPLOY_DP_SECRET of this worker host")
        parallel = replace(engine_config.parallel, data_parallel_size_local=mine.data_parallel_size_local)
        count = local_replica_count(parallel, parallel.nnodes)
        host = listen_address(mine, master_addr)
        listeners = bind_listeners(host, count, mine.data_parallel_rpc_port)
        self.node_rank, self.status = node_rank, status
        self.addresses = [ReplicaAddress(node_rank, host, sock.getsockname()[1]) for sock in listeners]
        visible = visible_gpus(replace(engine_config, device=device or engine_config.device))
        self.procs: list[subprocess.Popen] = []
        try:
            for k, sock in enumerate(listeners):
                env = {**os.environ, **replica_devices(engine_config, k, visible, count), "VDEPLOY_DP_SECRET": secret}
                command = [sys.executable, "-m", "vdeploy.engine.core_process", "--listen-fd", str(sock.fileno()),
                           "--model", model_path, *(["--device", device] if device else [])]
                self.procs.append(subprocess.Popen(command, pass_fds=(sock.fileno(),), env=env))
            publish_replicas(store, node_rank, self.addresses)
        except BaseException:
            self.stop()
            raise
        finally:
            for sock in listeners:  # each replica holds its own copy of its socket
                sock.close()
        status(f"node {node_rank}: {count} replica(s) listening on "
               + ", ".join(f"{a.host}:{a.port}" for a in self.addresses))

    def watch(self, poll: Callable[[], None]) -> None:
        """Until every replica exited. `poll` raises JobEnded when the job ends. Raises ExecutorError when a
        replica failed or the job ended otherwise than by node 0's shutdown."""
        try:
            failures = self._watch(poll)
        except JobEnded as stopped:
            # node 0 shuts its replicas down before it stops the job: give their exits a moment to land
            deadline = time.monotonic() + _EXIT_GRACE_S
            while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
                time.sleep(_WATCH_S)
            told_to_stop = all(p.poll() == 0 for p in self.procs)
            if stopped.reason != "shutdown" and not told_to_stop:
                raise ExecutorError(f"the job stopped: {stopped.reason}") from None
            return
        finally:
            self.stop()
        if failures:
            raise ExecutorError("; ".join(failures),
                                hint="node 0 served the other replicas meanwhile; see the replica's log above")

    def _watch(self, poll: Callable[[], None]) -> list[str]:
        """The replicas that failed, in words (each named as it happens)."""
        ended: set[int] = set()
        failures: list[str] = []
        while True:
            for k, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None or k in ended:
                    continue
                ended.add(k)
                if code != 0:
                    where = f"{self.addresses[k].host}:{self.addresses[k].port}"
                    how = "lost node 0 (its connection closed)" if code == NODE0_GONE else describe_exit(code)
                    failures.append(f"the replica at {where} (pid {proc.pid}) {how}")
                    self.status(f"node {self.node_rank}: {failures[-1]}; the other replicas keep serving")
            if len(ended) == len(self.procs):
                return failures
            poll()
            time.sleep(_WATCH_S)

    def stop(self) -> None:
        """Kill what still runs (replicas ignore SIGTERM and SIGINT: they stop on node 0's word, or by force)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
