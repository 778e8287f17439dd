"""A rank stopped on another node (SIGSTOP, a debugger, uninterruptible sleep) is named by node 0's watchdogs, as a
stopped rank on node 0 is: the worker host publishes which of its ranks are stuck. Two "nodes" on 127.0.0.1, PP 2
(one stage, one rank per node: rank 1 on node 1 is the driver)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from parallel_testlib import ENGINE, PROMPTS, free_port, multi_node_kwargs, rank_pids_of, start_worker_host

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("llama-stuck"), "llama", dtype="float32", num_shards=1)


def start_job(path, **watchdogs):
    from vdeploy.engine.llm import LLM

    port = free_port()
    node1 = start_worker_host(path, port, tp=1, pp=2)
    llm = LLM(str(path), **ENGINE, **multi_node_kwargs(port, tp=1, pp=2), **watchdogs)
    return llm, node1


def assert_job_gone(node1, pids: list[int]) -> None:
    assert node1.wait(timeout=20) == 1  # node 0 aborted the job
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.timeout(90)
def test_a_stopped_rank_on_node_1_is_named_by_the_step_watchdog(llama):
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.executor import ExecutorError

    llm, node1 = start_job(llama, step_timeout_s=4.0)
    params = SamplingParams(temperature=0, max_tokens=2, ignore_eos=True)
    try:
        llm.generate(PROMPTS, params)
        [rank1] = rank_pids_of(node1.pid)
        os.kill(rank1, signal.SIGSTOP)  # rank 0 then waits for it at the stage boundary
        began = time.monotonic()
        with pytest.raises(ExecutorError, match=rf"no step finished within 4 s: node 1: rank 1 \(pid {rank1}\) is "
                                                r"stopped"):
            llm.generate(PROMPTS, params)
        assert time.monotonic() - began < 4 + 8
        assert_job_gone(node1, [rank1])
    finally:
        llm.close()
        node1.kill()


@pytest.mark.timeout(90)
def test_a_stopped_rank_on_node_1_is_named_by_the_idle_watchdog(llama):
    from vdeploy.executor import ExecutorError

    llm, node1 = start_job(llama, idle_timeout_s=2.0)
    try:
        [rank1] = rank_pids_of(node1.pid)
        llm.core.check_idle()
        os.kill(rank1, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        with pytest.raises(ExecutorError, match=rf"while idle for 2 s: node 1: rank 1 \(pid {rank1}\) is stopped"):
            while time.monotonic() < deadline:  # the engine's loops call this every fraction of a second
                llm.core.check_idle()
                time.sleep(0.2)
        assert_job_gone(node1, [rank1])
    finally:
        llm.close()
        node1.kill()
