"""Helpers for the parallelism tests: tiny checkpoints, greedy generation through the whole engine, and a second
"node" (a `vdeploy worker-host` process tree) on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

# distinct lengths, one longer than a chunk of the default budget; token ids valid for both tiny vocabularies
PROMPTS = [[(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([9, 37, 21, 5])]
MAX_TOKENS = 8
ENGINE = dict(dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128)


def greedy_tokens(path: Path, prompts=PROMPTS, **engine_kwargs) -> list[list[int]]:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    with LLM(str(path), **{**ENGINE, **engine_kwargs}) as llm:
        return [o.outputs[0].token_ids for o in llm.generate(prompts, params)]


def free_port() -> int:
    """A port free right now (the rendezvous port of a simulated multi-node job must be known to both nodes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker_host(path: Path, port: int, *, tp: int, pp: int, nnodes: int = 2,
                      node_rank: int = 1) -> subprocess.Popen:
    """`vdeploy worker-host` as its own process (tree), as on a second machine."""
    return subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "worker-host", str(path), "--nnodes", str(nnodes), "--node-rank",
         str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port), "--tp", str(tp), "--pp", str(pp)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def rank_pids_of(host_pid: int) -> list[int]:
    """Pids of the rank processes under a worker host: the children of its multiprocessing forkserver (the host's
    child that has children of its own), read from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
    forkservers = {parent for pid, parent in parents.items() if parents.get(parent) == host_pid}
    return sorted(pid for pid, parent in parents.items() if parent in forkservers)


def multi_node_kwargs(port: int, *, tp: int, pp: int) -> dict:
    return dict(tensor_parallel_size=tp, pipeline_parallel_size=pp, nnodes=2, node_rank=0,
                master_addr="127.0.0.1", master_port=port)
