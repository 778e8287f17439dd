"""Data parallelism on CPU with real engine-core processes: two replicas share the requests and give the tokens one
engine gives; a replica that is killed is named, its streams fail, and the other keeps serving."""

import asyncio
import os
import signal

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.streams import EngineDeadError
from vdeploy.engine.data_parallel import DataParallelEngine, replica_devices
from vdeploy.engine.llm import LLM, build_engine_config
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

PROMPTS = [[(13 * i + 5 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([7, 19, 4, 30, 11, 9])]
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("dp"), "llama", dtype="float32", num_shards=1)


def config(checkpoint, dp=2):
    return build_engine_config(str(checkpoint), dtype="float32", device="cpu", block_size=4,
                               num_gpu_blocks_override=128, data_parallel_size=dp)


async def collect(engine, prompt, params, rid):
    last = None
    async for out in engine.generate(prompt, params, rid):
        last = out
    return last.outputs[0].token_ids


def test_replica_devices_split_the_visible_gpus(checkpoint):
    cfg = config(checkpoint, dp=2)
    assert replica_devices(cfg, 1, ["0", "1", "2", "3"]) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert replica_devices(cfg, 0, None) == {}
    with pytest.raises(ConfigError, match="needs 2 GPUs, 1 visible"):
        replica_devices(cfg, 1, ["0"])


@pytest.mark.timeout(180)
def test_two_replicas_share_requests_and_survive_one_death(checkpoint):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128) as llm:
        expected = [o.outputs[0].token_ids for o in llm.generate(PROMPTS, GREEDY)]

    async def main():
        engine = DataParallelEngine(config(checkpoint))
        try:
            got = await asyncio.gather(*(collect(engine, p, GREEDY, f"r{i}") for i, p in enumerate(PROMPTS)))
            assert list(got) == expected
            assert all(r.stats().prompt_tokens_total > 0 for r in engine.replicas)  # both served
            # a long request lands on replica 0 (both idle: the lower index wins); kill that replica under it as
            # soon as its first tokens arrive (a fixed sleep let a fast machine finish the request first)
            started = asyncio.Event()

            async def long_request():
                async for _ in engine.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=400,
                                                                           ignore_eos=True), "long"):
                    started.set()

            long = asyncio.ensure_future(long_request())
            await asyncio.wait_for(started.wait(), 30)
            victim = engine.replicas[0]
            os.kill(victim.pid, signal.SIGKILL)
            with pytest.raises(EngineDeadError, match=rf"replica 0 \(engine process {victim.pid}\)"):
                await asyncio.wait_for(long, 30)
            assert engine.is_running
            again = await asyncio.wait_for(collect(engine, PROMPTS[1], GREEDY, "after"), 60)
            assert again == expected[1]
        finally:
            engine.close()

    asyncio.run(main())
