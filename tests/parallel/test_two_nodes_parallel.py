"""A two-node job simulated on one CPU machine: node 0 is the engine (vdeploy.LLM with nnodes=2, node_rank=0),
node 1 a `vdeploy worker-host` process tree, both on 127.0.0.1 over gloo, TP=2 x PP=2 (each node one stage)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from parallel_testlib import (
    ENGINE,
    MAX_TOKENS,
    PROMPTS,
    free_port,
    greedy_tokens,
    multi_node_kwargs,
    rank_pids_of,
    start_worker_host,
)

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("llama-2node"), "llama", dtype="float32", num_shards=2,
                                 config_overrides={"num_hidden_layers": 3})
    return path, greedy_tokens(path)


def stop(node):
    if node.poll() is None:
        node.kill()
    return node.communicate(timeout=10)


@pytest.mark.timeout(90)
def test_two_nodes_greedy_matches_single_rank_and_both_exit_cleanly(llama):
    path, expected = llama
    port = free_port()
    node1 = start_worker_host(path, port, tp=2, pp=2)
    try:
        assert greedy_tokens(path, **multi_node_kwargs(port, tp=2, pp=2)) == expected
        assert node1.wait(timeout=30) == 0  # the engine's shutdown reached node 1
    finally:
        _, err = stop(node1)
    assert "ranks 2-3 ready" in err and "shut down" in err


@pytest.mark.timeout(90)
def test_a_dead_node_stops_the_engine_within_seconds(llama):
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.executor import ExecutorError

    path, expected = llama
    port = free_port()
    node1 = start_worker_host(path, port, tp=2, pp=2)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    try:
        llm = LLM(str(path), **ENGINE, **multi_node_kwargs(port, tp=2, pp=2))
        try:
            assert [o.outputs[0].token_ids for o in llm.generate(PROMPTS, params)] == expected
            local_pids = llm.core.executor.rank_pids
            os.kill(node1.pid, signal.SIGKILL)  # the whole "machine": its ranks follow their host
            began = time.monotonic()
            with pytest.raises(ExecutorError, match="node 1") as info:
                llm.generate(PROMPTS, params)
            assert time.monotonic() - began < 10
            assert "worker-host" in info.value.hint
            for pid in local_pids:
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)
        finally:
            llm.close()
    finally:
        stop(node1)


@pytest.mark.timeout(60)
def test_a_node_started_with_other_settings_fails_the_job_with_its_reason(llama):
    from vdeploy.engine.llm import LLM
    from vdeploy.errors import ConfigError

    path, _ = llama
    port = free_port()
    node1 = start_worker_host(path, port, tp=1, pp=4)
    try:
        began = time.monotonic()
        with pytest.raises(ConfigError, match="--tp 2 --pp 2"):
            LLM(str(path), **ENGINE, **multi_node_kwargs(port, tp=2, pp=2))
        assert time.monotonic() - began < 30
        assert node1.wait(timeout=10) == 2
    finally:
        _, err = stop(node1)
    assert "same --tp" in err


@pytest.mark.timeout(60)
def test_a_checkpoint_error_on_node_1_reaches_the_engine_as_itself(llama, tmp_path):
    from vdeploy.engine.llm import LLM
    from vdeploy.errors import CheckpointError

    path, _ = llama
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((path / "config.json").read_text())  # right config, no weights
    port = free_port()
    node1 = start_worker_host(broken, port, tp=2, pp=2)
    try:
        with pytest.raises(CheckpointError, match="holds no index and no safetensors shard"):
            LLM(str(path), **ENGINE, **multi_node_kwargs(port, tp=2, pp=2))
        assert node1.wait(timeout=10) != 0
    finally:
        stop(node1)


@pytest.mark.timeout(90)
def test_a_rank_killed_on_node_1_fails_the_job_naming_it(llama):
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.executor import ExecutorError

    path, _ = llama
    port = free_port()
    node1 = start_worker_host(path, port, tp=2, pp=2)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    try:
        llm = LLM(str(path), **ENGINE, **multi_node_kwargs(port, tp=2, pp=2))
        try:
            remote_ranks = rank_pids_of(node1.pid)
            assert len(remote_ranks) == 2
            os.kill(remote_ranks[-1], signal.SIGKILL)
            began = time.monotonic()
            with pytest.raises(ExecutorError, match=r"node 1: rank [23] \(pid \d+\) died"):
                llm.generate(PROMPTS, params)
            assert time.monotonic() - began < 10
        finally:
            llm.close()
        assert node1.wait(timeout=10) == 1  # the host reported its rank and stopped the other one
    finally:
        stop(node1)
