"""Multi-process executor robustness: dead or failing ranks, shutdown, two executors side by side (gloo, CPU)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from worker_checkpoints import engine_config, greedy_generate, model_config, save_tiny_checkpoint

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.executor import ExecutorError, create_executor

PROMPTS = [[1, 5, 9, 33], [1, 100, 3]]


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama-tp"), "llama", seed=1)


def start(path, tp=2):
    executor = create_executor(engine_config(path, tp=tp), model_config(path))
    executor.initialize_kv_cache(executor.determine_num_kv_blocks())
    return executor


def assert_all_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # reaped, not a zombie
            os.kill(pid, 0)


def decode_step(i: int) -> SchedulerOutput:
    greedy = SamplingParams(temperature=0.0)
    return SchedulerOutput([ScheduledRequest("r", [1 + i % 50], i, list(range(16)), True, greedy)], 1)


@pytest.mark.timeout(60)
def test_rank_killed_mid_run_raises_within_seconds_and_leaves_no_process(llama_path):
    executor = start(llama_path)
    pids = executor.rank_pids
    greedy_generate(executor, PROMPTS, 2)
    threading.Timer(0.5, os.kill, (pids[1], signal.SIGKILL)).start()
    began = time.monotonic()
    with pytest.raises(ExecutorError, match="rank"):
        for i in range(100_000):  # steps keep running until the kill lands
            executor.execute(decode_step(i % 60))
    assert time.monotonic() - began < 10
    assert_all_gone(pids)
    with pytest.raises(ExecutorError, match="shut down"):
        executor.execute(decode_step(0))
    executor.shutdown()  # idempotent after a failure


@pytest.mark.timeout(60)
def test_exception_in_a_rank_reaches_the_caller_with_its_traceback(llama_path):
    executor = start(llama_path)
    pids = executor.rank_pids
    bad = ScheduledRequest("bad", [1, 2], 0, [10_000], True, SamplingParams(temperature=0.0))  # no such block
    with pytest.raises(ExecutorError) as info:
        executor.execute(SchedulerOutput([bad], 2))
    assert "rank" in info.value.message and info.value.exit_code == 1
    assert info.value.remote_traceback and "Error" in info.value.remote_traceback
    assert_all_gone(pids)


@pytest.mark.timeout(60)
def test_two_executors_at_once_and_clean_shutdown(llama_path):
    first = start(llama_path)
    second = start(llama_path)
    pids = first.rank_pids + second.rank_pids
    try:
        assert len(set(pids)) == 4
        a = greedy_generate(first, PROMPTS, 6)
        b = greedy_generate(second, PROMPTS, 6)
        assert a == b
    finally:
        first.shutdown()
        second.shutdown()
    assert_all_gone(pids)


@pytest.mark.timeout(60)
def test_a_config_error_in_a_rank_reaches_the_caller_as_itself(llama_path):
    from vdeploy.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible") as info:  # 8 heads over 3 ranks
        create_executor(engine_config(llama_path, tp=3), model_config(llama_path))
    assert info.value.exit_code == 2


def test_oversized_control_payload_is_refused():
    from vdeploy.executor.control import PayloadTooLargeError, decode, encode

    assert decode(encode(decode_step(3), limit=4096)).requests[0].start_pos == 3
    with pytest.raises(PayloadTooLargeError, match="exceeds"):
        encode(list(range(10_000)), limit=4096)


def test_launch_topology_from_flags_and_torchrun_environment():
    from vdeploy.config import ParallelConfig
    from vdeploy.distributed.rendezvous import launch_topology

    single = launch_topology(ParallelConfig(tensor_parallel_size=4), environ={})
    assert (single.nnodes, single.node_rank, single.ranks_per_node, single.master_port) == (1, 0, 4, None)
    env = {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "GROUP_RANK": "1", "MASTER_ADDR": "10.0.0.1",
           "MASTER_PORT": "29500"}
    two = launch_topology(ParallelConfig(tensor_parallel_size=8, pipeline_parallel_size=2), environ=env)
    assert (two.nnodes, two.node_rank, two.ranks_per_node, two.world_size) == (2, 1, 8, 16)
    assert (two.master_addr, two.master_port, two.global_rank(3)) == ("10.0.0.1", 29500, 11)
    flags = ParallelConfig(tensor_parallel_size=8, pipeline_parallel_size=2, nnodes=2, node_rank=0,
                           master_addr="10.9.9.9", master_port=4000)
    assert launch_topology(flags, environ=env).master_addr == "10.9.9.9"


ENGINE_SCRIPT = """
import sys, time
sys.path.insert(0, {tests_dir!r})
from worker_checkpoints import engine_config, model_config
from vdeploy.executor import create_executor
if __name__ == "__main__":
    ex = create_executor(engine_config({path!r}, tp=2), model_config({path!r}))
    print(" ".join(map(str, ex.rank_pids)), flush=True)
    time.sleep(120)
"""


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" in f.read()  # exited, waiting for its parent to reap it
    except FileNotFoundError:
        return True


@pytest.mark.timeout(60)
def test_ranks_exit_when_the_engine_process_is_killed(llama_path, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "engine.py"
    script.write_text(ENGINE_SCRIPT.format(tests_dir=str(Path(__file__).parent), path=str(llama_path)))
    engine = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in engine.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        engine.kill()
        engine.wait()
    deadline = time.monotonic() + 10
    while not all(_exited(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_exited(p) for p in pids)


@pytest.mark.timeout(60)
def test_a_stopped_rank_is_named_by_the_step_watchdog_and_everything_exits(llama_path):
    from dataclasses import replace

    cfg = engine_config(llama_path, tp=2)
    cfg = replace(cfg, parallel=replace(cfg.parallel, step_timeout_s=3.0))
    executor = create_executor(cfg, model_config(llama_path))
    executor.initialize_kv_cache(executor.determine_num_kv_blocks())
    pids = executor.rank_pids
    greedy_generate(executor, PROMPTS, 2)
    os.kill(pids[1], signal.SIGSTOP)  # a rank that stops making progress: rank 0 then waits in its all-reduce
    began = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"no step finished within 3 s: rank 1 \(pid {pids[1]}\) is stopped"):
        executor.execute(decode_step(0))
    assert time.monotonic() - began < 3 + 8
    assert_all_gone(pids)
