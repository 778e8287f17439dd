"""The command line of pipeline and multi-node runs: --pp where --tp is, and `vdeploy worker-host`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vdeploy.cli.main import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


@pytest.mark.parametrize("command", ["serve", "generate", "bench", "worker-host"])
def test_pp_flag_is_offered_where_tp_is(command):
    result = CliRunner().invoke(app, [command, "--help"], env=ENV)
    assert result.exit_code == 0
    assert "--pp" in result.stdout and "--pipeline-parallel-size" in result.stdout


def test_serve_takes_the_multi_node_flags():
    out = CliRunner().invoke(app, ["serve", "--help"], env=ENV).stdout
    assert all(flag in out for flag in ("--nnodes", "--node-rank", "--master-addr", "--master-port"))


def test_worker_host_refuses_node_zero_and_a_missing_port(tmp_path):
    from vdeploy.config import ParallelConfig
    from vdeploy.errors import ConfigError
    from vdeploy.executor.worker_host import run_worker_host

    with pytest.raises(ConfigError, match="other than node 0"):
        run_worker_host(str(tmp_path), ParallelConfig(tensor_parallel_size=2, nnodes=2, node_rank=0,
                                                      master_port=29500))
    with pytest.raises(ConfigError, match="--master-port"):
        run_worker_host(str(tmp_path), ParallelConfig(tensor_parallel_size=2, nnodes=2, node_rank=1))



def test_a_taken_master_port_is_a_clear_error(tmp_path):
    import torch.distributed as dist

    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
    from vdeploy.config import ModelConfig
    from vdeploy.engine.llm import build_engine_config
    from vdeploy.errors import ConfigError
    from vdeploy.executor import create_executor

    path = write_tiny_checkpoint(tmp_path, "llama", dtype="float32", num_shards=1)
    taken = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, wait_for_workers=False)  # another job's store
    config = build_engine_config(str(path), device="cpu", tensor_parallel_size=2, nnodes=2, node_rank=0,
                                 master_addr="127.0.0.1", master_port=taken.port)
    with pytest.raises(ConfigError, match="cannot host the rendezvous store") as info:
        create_executor(config, ModelConfig.from_path(path))
    assert "--master-port" in info.value.hint


def test_under_torchrun_node_0_joins_the_agents_store_instead_of_binding_its_port():
    import torch.distributed as dist

    from vdeploy.distributed.rendezvous import host_store

    agent = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)  # torchrun's agent store
    ours = host_store("127.0.0.1", agent.port, 2, environ={"TORCHELASTIC_USE_AGENT_STORE": "True"})
    ours.set("vdeploy/probe", b"1")
    assert agent.get("vdeploy/probe") == b"1"
    with pytest.raises(RuntimeError, match="address already in use|EADDRINUSE"):
        host_store("127.0.0.1", agent.port, 2, environ={})  # without torchrun the port must be free
