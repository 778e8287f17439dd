"""Two `vdeploy worker-host`s started with the same --node-rank (a command copied to the wrong machine) fail the
job at once, naming the node, instead of leaving node 0 waiting for the rendezvous timeout (10 minutes) for a node
that never comes. Three "nodes" on 127.0.0.1, PP 3 (one rank per node)."""

from __future__ import annotations

import time

import pytest
from parallel_testlib import ENGINE, free_port, start_worker_host

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint


@pytest.mark.timeout(60)
def test_a_node_rank_claimed_twice_fails_the_job_naming_it(tmp_path):
    from vdeploy.engine.llm import LLM
    from vdeploy.errors import ConfigError

    path = write_tiny_checkpoint(tmp_path, "llama", dtype="float32", num_shards=1,
                                 config_overrides={"num_hidden_layers": 3})
    port = free_port()
    hosts = [start_worker_host(path, port, tp=1, pp=3, nnodes=3, node_rank=1) for _ in range(2)]
    try:
        began = time.monotonic()
        with pytest.raises(ConfigError, match="node 1 .*twice") as info:
            LLM(str(path), **ENGINE, tensor_parallel_size=1, pipeline_parallel_size=3, nnodes=3, node_rank=0,
                master_addr="127.0.0.1", master_port=port)
        assert time.monotonic() - began < 30
        assert "--node-rank" in info.value.hint
        # the duplicate refuses (a ConfigError's exit code); the job's abort stops the other (1)
        assert sorted(host.wait(timeout=20) for host in hosts) == sorted([ConfigError.exit_code, 1])
        assert any("twice" in host.stderr.read() for host in hosts)
    finally:
        for host in hosts:
            host.kill()
            host.wait()
