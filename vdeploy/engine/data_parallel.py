"""Data parallelism: N engine replicas (each an engine-core process with its own GPUs) behind one server.

On one host the replicas are children of the server. With --nnodes K they are spread over the nodes of one launch
(vdeploy/engine/dp_job.py): node 0 runs the server and its share, every other node runs `vdeploy worker-host`, whose
replicas the server reaches over authenticated TCP (vdeploy/engine/dp_host.py). Local or remote, each replica is a
ProcessAsyncEngine, so everything below treats them alike.

Each request goes to the live replica with the least work: requests it is serving for this front-end, then its KV
use (the stats snapshot of its latest step). Aborts follow the request to its replica. A replica that dies is named
("replica 1 (engine process 123)", "replica 2 on node 1 (10.0.0.2:4100)"): its open streams fail with
EngineDeadError, and new requests go to the others; the server is unhealthy only when no replica is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Optional

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.dp_lora import load_everywhere, served_adapters, unload_everywhere
from vdeploy.engine.streams import EngineDeadError
from vdeploy.engine.outputs import EngineStats
from vdeploy.engine.outputs import OutputKind, RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError


def replica_devices(config: EngineConfig, replica: int, visible: list[str] | None,
                    replicas_here: int | None = None) -> dict[str, str]:
    """The environment that gives replica `replica` of this host its own GPUs: world_size consecutive ones of those
    visible. replicas_here: how many replicas this host runs (default: all of them, on one host)."""
    if visible is None:
        return {}
    world = config.parallel.world_size
    count = config.parallel.data_parallel_size if replicas_here is None else replicas_here
    mine = visible[replica * world:(replica + 1) * world]
    if len(mine) < world:
        raise ConfigError(
            f"{count} replica(s) on this host x {world} GPUs per replica needs {count * world} GPUs, "
            f"{len(visible)} visible",
            hint="lower --data-parallel-size, --tp or --pp, or check CUDA_VISIBLE_DEVICES")
    return {"CUDA_VISIBLE_DEVICES": ",".join(mine)}


def visible_gpus(config: EngineConfig) -> list[str] | None:
    """The GPU ids replicas split among themselves, or None when the engine runs on the CPU."""
    if config.device == "cpu":
        return None
    import os

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d for d in listed.split(",") if d.strip()]
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA build: a CPU deployment
        return None
    return [str(i) for i in range(count)] if count else None


class DataParallelEngine:
    """The server's engine interface (generate, abort, stats, shutdown …) over several ProcessAsyncEngines."""

    def __init__(self, config: EngineConfig, *, model_name: Optional[str] = None,
                 chat_template: Optional[str] = None, model_config: Optional[ModelConfig] = None):
        from vdeploy.engine.process_engine import ProcessAsyncEngine

        size = config.parallel.data_parallel_size
        if size < 1:
            raise ConfigError(f"--data-parallel-size must be at least 1, got {size}")
        # every replica is a single-node engine of its own; the secret stays in this process
        replica_config = replace(config, parallel=replace(
            config.parallel, data_parallel_size=1, data_parallel_size_local=None, nnodes=1, node_rank=0,
            master_addr=None, master_port=None, dp_listen_address=None, data_parallel_rpc_port=None, dp_secret=None))
        self._job = None
        self.replicas: list[ProcessAsyncEngine] = []
        self.nodes: list[int] = []  # node rank of each replica
        self.addresses: list[Optional[str]] = []  # host:port of each remote replica (None: a child of this server)
        starts: list[Callable[[], ProcessAsyncEngine]] = []

        def local(env: dict[str, str]) -> Callable[[], ProcessAsyncEngine]:
            return lambda: ProcessAsyncEngine(replica_config, model_name=model_name, chat_template=chat_template,
                                              model_config=model_config, env=env)

        def remote(address, label: str) -> Callable[[], ProcessAsyncEngine]:
            return lambda: ProcessAsyncEngine(replica_config, model_name=model_name, chat_template=chat_template,
                                              model_config=model_config, core=self._job.connect(address, label))

        try:
            local_count = size
            if config.parallel.nnodes == 1 and config.parallel.data_parallel_size_local not in (None, size):
                raise ConfigError("--data-parallel-size-local splits replicas over the nodes of --nnodes > 1",
                                  hint="on one host, --data-parallel-size alone says how many replicas run")
            if config.parallel.nnodes > 1:
                from vdeploy.engine.dp_job import NodeJob

                self._job = NodeJob(config, model_config or ModelConfig.from_path(config.model))
                local_count = self._job.local_count
            visible = visible_gpus(config)
            for k in range(local_count):
                starts.append(local(replica_devices(config, k, visible, local_count)))
                self.nodes.append(0)
                self.addresses.append(None)
            if self._job is not None:
                for address in self._job.remote_addresses(size):
                    k = len(starts)
                    self.nodes.append(address.node_rank)
                    self.addresses.append(f"{address.host}:{address.port}")
                    starts.append(remote(address, self.label(k)))
            self.replicas = _start_all(starts)
        except BaseException as e:
            self._close(f"node 0 could not start its replicas: {e}")
            raise
        if self._job is not None:
            self._job.watch(self._node_lost)
        first = self.replicas[0]
        self.config, self.model_name, self.tokenizer = config, first.model_name, first.tokenizer
        self.max_model_len, self.generation_defaults = first.max_model_len, first.generation_defaults
        self.eos_token_ids = first.eos_token_ids
        self._assigned = [0] * size  # requests of this front-end open on each replica
        self._replica_of: dict[str, int] = {}
        # one adapter load or unload at a time: interleaved, each could leave the other's adapter on some replicas
        self._adapter_change = asyncio.Lock()

    @property
    def is_running(self) -> bool:
        return any(r.is_running for r in self.replicas)

    @property
    def max_waiting(self) -> int:
        # a request's sequences all queue on the one replica it goes to: more than one replica holds is a 400
        return min(r.max_waiting for r in self.replicas)

    def stats(self) -> EngineStats:
        return merge_replica_stats([r.stats() for r in self.replicas], [r.is_running for r in self.replicas])

    def _pick(self) -> int:
        live = [k for k, r in enumerate(self.replicas) if r.is_running]
        if not live:
            raise EngineDeadError("every data-parallel replica has stopped")
        return min(live, key=lambda k: (self._assigned[k], self.replicas[k].stats().kv_usage, k))

    async def generate(self, prompt_token_ids: list[int], params: SamplingParams, request_id: str,
                       lora_name: Optional[str] = None, output_kind: OutputKind = OutputKind.CUMULATIVE,
                       cache_salt: Optional[str] = None) -> AsyncIterator[RequestOutput]:
        k = self._pick()
        self._assigned[k] += 1
        self._replica_of[request_id] = k
        try:
            async for out in self.replicas[k].generate(prompt_token_ids, params, request_id, lora_name, output_kind,
                                                       cache_salt):
                yield out
        except EngineDeadError as e:
            raise EngineDeadError(f"{self.label(k)}: {e}",
                                  hint="the other replicas keep serving; retry the request") from e
        finally:
            self._assigned[k] -= 1
            self._replica_of.pop(request_id, None)

    @property
    def lora_adapters(self) -> dict[str, str]:
        """The adapters every live replica serves (a request for one may be routed to any of them)."""
        return served_adapters(self.replicas)

    async def load_lora(self, name: str, path: str) -> None:
        """Every live replica loads the adapter, or none does: the first refusal is raised."""
        async with self._adapter_change:
            await load_everywhere(self.replicas, name, path, self.label)

    async def unload_lora(self, name: str) -> None:
        async with self._adapter_change:
            await unload_everywhere(self.replicas, name)

    def abort(self, request_id: str) -> None:
        k = self._replica_of.get(request_id)
        if k is not None:
            self.replicas[k].abort(request_id)

    async def shutdown(self, drain_timeout_s: float = 30.0) -> int:
        """Every replica drains at once; returns the number of requests cut at the deadline."""
        return sum(await asyncio.gather(*(r.shutdown(drain_timeout_s) for r in self.replicas)))

    def close(self) -> None:
        self._close("shutdown")

    def _close(self, reason: str) -> None:
        """Close every replica, then tell the other nodes' hosts why the job ended ("shutdown": cleanly)."""
        for r in self.replicas:
            r.close()
        if self._job is not None:
            self._job.close(reason)

    def label(self, k: int) -> str:
        """How errors and logs name replica k."""
        if self.addresses[k] is not None:
            return f"replica {k} on node {self.nodes[k]} ({self.addresses[k]})"
        where = " on node 0" if self._job is not None else ""
        pid = self.replicas[k].pid if k < len(self.replicas) else "starting"
        return f"replica {k}{where} (engine process {pid})"

    def _node_lost(self, node: int, reason: str) -> None:
        """A node stopped beating or failed: cut its replicas (their streams fail naming it, as a death would)."""
        for k, replica in enumerate(self.replicas):
            if self.nodes[k] == node:
                replica.cut(reason)

    def describe(self) -> list[dict[str, Any]]:
        """One line of facts per replica (for the startup log and `ps`)."""
        return [{"replica": k, "node": self.nodes[k], "pid": r.pid, "address": self.addresses[k],
                 "running": r.is_running} for k, r in enumerate(self.replicas)]


# EngineStats fields that describe the replicas' present state; every other field but kv_usage is a running total
_GAUGES = ("num_running", "num_waiting", "num_free_blocks", "num_total_blocks")


def merge_replica_stats(parts: list[EngineStats], running: list[bool]) -> EngineStats:
    """One EngineStats for the server. Gauges (queues, KV blocks and use) describe the live replicas only. Running
    totals add up every replica's latest snapshot, a dead one's last included: Prometheus counters must never go
    down (a drop reads as a restart and rate() invents traffic), and the server's warm-up offset includes it."""
    live = [p for p, up in zip(parts, running) if up]
    totals = {f: sum(getattr(p, f) for p in parts) for f in EngineStats.__dataclass_fields__
              if f not in _GAUGES and f != "kv_usage"}
    gauges = {f: sum(getattr(p, f) for p in live) for f in _GAUGES}
    blocks = gauges["num_total_blocks"]
    usage = sum(p.kv_usage * p.num_total_blocks for p in live) / blocks if blocks else 0.0
    return EngineStats(kv_usage=usage, **gauges, **totals)


def _start_all(starts: list[Callable[[], Any]]) -> list[Any]:
    """Start every replica at once (a big model loads for minutes: one node after the other would add those up);
    when one fails, the ones that started are closed and the first failure is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(starts), thread_name_prefix="vdeploy-dp-start") as pool:
        futures = [pool.submit(start) for start in starts]
        errors = [f.exception() for f in futures]
    started = [f.result() for f, e in zip(futures, errors) if e is None]
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        for engine in started:
            engine.close()
        raise failed
    return started
