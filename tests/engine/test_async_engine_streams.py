"""AsyncEngine over the fake executor: streaming, concurrency, cancellation frees KV, errors surface, draining."""

import asyncio
import threading
import time

import pytest
from engine_fake_executor import TINY_LLAMA as MODEL
from engine_fake_executor import PagedTokenExecutor, reference_generation

from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
from vdeploy.engine.async_engine import AsyncEngine
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import QueueFull
from vdeploy.engine.streams import EngineDeadError, EngineShuttingDown
from vdeploy.errors import ConfigError


class SlowExecutor(PagedTokenExecutor):
    """Steps wait on a gate so tests can hold requests in flight."""

    def __init__(self, *a, fail_after: int | None = None, step_delay_s: float = 0.0, **kw):
        super().__init__(*a, **kw)
        self.step_delay_s = step_delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.fail_after = fail_after

    def execute(self, sched):
        self.gate.wait(5)
        time.sleep(self.step_delay_s)
        if self.fail_after is not None and len(self.steps) >= self.fail_after:
            raise RuntimeError("device lost")
        return super().execute(sched)


def make_async(tmp_path, max_waiting=4096, **ex_kw):
    cfg = EngineConfig(model=str(tmp_path), cache=CacheConfig(block_size=4), scheduler=SchedulerConfig(max_waiting=max_waiting))
    ex = SlowExecutor(4, 64, **ex_kw)
    return AsyncEngine(cfg, core=EngineCore(cfg, model_config=MODEL, executor=ex)), ex


async def collect(engine, rid, prompt, params):
    return [out async for out in engine.generate(prompt, params, rid)]


def test_concurrent_streams_deliver_every_token_once(tmp_path):
    engine, _ = make_async(tmp_path)

    async def main():
        params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
        prompts = [[i, i + 1, i + 2] for i in range(8)]
        results = await asyncio.gather(*(collect(engine, f"r{i}", p, params) for i, p in enumerate(prompts)))
        for prompt, outs in zip(prompts, results):
            assert outs[-1].finished and not any(o.finished for o in outs[:-1])
            streamed = [t for o in outs for t in o.outputs[0].delta_token_ids]
            assert streamed == reference_generation(prompt, 10) == outs[-1].outputs[0].token_ids
        await engine.shutdown(1)

    asyncio.run(main())
    assert engine.stats().num_free_blocks == 64


def test_cancelled_consumer_aborts_and_frees_blocks(tmp_path):
    engine, _ = make_async(tmp_path, step_delay_s=0.02)  # ~100 steps to the length limit: seconds in flight

    async def main():
        params = SamplingParams(temperature=0, max_tokens=1000, ignore_eos=True)
        seen = asyncio.Event()

        async def consume():
            async for _ in engine.generate(list(range(30)), params, "long"):
                seen.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(seen.wait(), 5)
        assert engine.stats().num_running == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            stats = engine.stats()
            if stats.num_running == 0 and stats.num_free_blocks == 64:
                break
            await asyncio.sleep(0.01)
        assert engine.stats().num_running == 0 and engine.stats().num_free_blocks == 64
        await engine.shutdown(1)

    asyncio.run(main())


def test_step_error_reaches_the_caller_instead_of_hanging(tmp_path):
    engine, _ = make_async(tmp_path, fail_after=2)

    async def main():
        with pytest.raises(EngineDeadError, match="device lost"):
            await asyncio.wait_for(collect(engine, "x", [1, 2, 3], SamplingParams(max_tokens=50, ignore_eos=True)), 5)
        with pytest.raises(EngineDeadError):
            await collect(engine, "y", [1], SamplingParams())
        assert not engine.is_running
        engine.close()

    asyncio.run(main())


def test_queue_full_validation_and_drain_on_shutdown(tmp_path):
    engine, ex = make_async(tmp_path, max_waiting=1)

    async def main():
        with pytest.raises(ConfigError, match="max_model_len"):
            await collect(engine, "big", list(range(500)), SamplingParams())
        ex.gate.clear()  # hold the first step so the second request stays queued
        params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
        first = asyncio.create_task(collect(engine, "a", [1, 2], params))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(collect(engine, "b", [3, 4], params))
        await asyncio.sleep(0.1)
        with pytest.raises(QueueFull):
            await collect(engine, "c", [5], params)
        ex.gate.set()
        shutdown = asyncio.create_task(engine.shutdown(drain_timeout_s=5))
        await asyncio.sleep(0)
        with pytest.raises(EngineShuttingDown):
            await collect(engine, "late", [1], params)
        await shutdown
        # in-flight requests were drained, not cut off
        assert (await first)[-1].outputs[0].finish_reason == "length"
        assert (await second)[-1].outputs[0].token_ids == reference_generation([3, 4], 3)

    asyncio.run(main())
    assert ex.shut_down


def test_parallel_samples_stream_with_their_index(tmp_path):
    engine, _ = make_async(tmp_path)

    async def main():
        params = SamplingParams(n=3, temperature=1.0, seed=5, max_tokens=6, ignore_eos=True)
        outs = await collect(engine, "n3", [1, 2, 3, 4, 5], params)
        per_index: dict[int, list[int]] = {}
        for out in outs:
            for c in out.outputs:
                per_index.setdefault(c.index, []).extend(c.delta_token_ids)
        assert sorted(per_index) == [0, 1, 2] and all(len(t) == 6 for t in per_index.values())
        assert outs[-1].finished and sum(o.finished for o in outs) == 1
        await engine.shutdown(1)

    asyncio.run(main())
