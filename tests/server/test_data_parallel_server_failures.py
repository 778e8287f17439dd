"""The server over a data-parallel engine (two real replica processes on CPU) when a replica dies or refuses an
adapter: /metrics counters never go down, the adapters listed are those every live replica serves, and loading an
adapter is all-or-nothing across the replicas (unloading too); a request no replica's queue can hold is a 400."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import httpx
import pytest
from server_harness import metric_value, start_server, write_test_tokenizer

from vdeploy.engine.data_parallel import DataParallelEngine
from vdeploy.engine.llm import build_engine_config
from vdeploy.engine.sampling_params import SamplingParams

PROMPT = "Hello world. The capital"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny Llama with the server tests' tokenizer, and two PEFT adapters for it."""
    from vdeploy.testing.lora_fixtures import write_peft_adapter, write_tiny_llama

    root = tmp_path_factory.mktemp("dp-failures")
    base = write_tiny_llama(root / "model", vocab_size=400, max_position_embeddings=512)
    write_test_tokenizer(root / "model")
    (root / "model" / "generation_config.json").write_text(json.dumps({"temperature": 0.0}))
    for name, seed in (("sql", 1), ("chat", 2)):
        write_peft_adapter(base, root / name, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], seed=seed)
    return root


MAX_WAITING = 8  # per replica


def dp_engine(model, **lora) -> DataParallelEngine:
    config = build_engine_config(str(model / "model"), dtype="float32", device="cpu", block_size=4,
                                 num_gpu_blocks_override=128, max_model_len=256, data_parallel_size=2,
                                 max_waiting=MAX_WAITING, **lora)
    return DataParallelEngine(config, model_name="tiny")


@contextlib.contextmanager
def serving(model, warm_up: bool = False, **lora):
    """A two-replica engine and the server over it, both closed afterwards. warm_up: one request first, as `vdeploy
    serve` sends before the server's metrics start counting."""
    engine = dp_engine(model, **lora)
    server = None
    try:
        if warm_up:
            asyncio.run(_warm_up(engine))
        server = start_server(engine)
        yield engine, server
    finally:
        if server is not None:
            server.stop()
        engine.close()


async def _warm_up(engine: DataParallelEngine) -> None:
    async for _ in engine.generate([5, 6, 7], SamplingParams(temperature=0, max_tokens=3), "warm-up"):
        pass


def complete(url: str, model: str, max_tokens: int = 6) -> httpx.Response:
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return httpx.post(f"{url}/v1/completions", json=body, timeout=60)


def kill(engine: DataParallelEngine, k: int) -> None:
    os.kill(engine.replicas[k].pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while engine.replicas[k].is_running:
        assert time.monotonic() < deadline, f"replica {k} still running"
        time.sleep(0.05)


def listed(url: str) -> set[str]:
    return {card["id"] for card in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]}


def load(url: str, name: str, path) -> httpx.Response:
    return httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}, timeout=60)


def unload(url: str, name: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


@pytest.mark.timeout(240)
def test_counters_keep_a_dead_replicas_totals(model):
    with serving(model, warm_up=True) as (engine, server):
        usage = [complete(server.url, "tiny").json()["usage"] for _ in range(3)]  # one at a time: all on replica 0
        before = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert metric_value(before, "vdeploy_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usage)
        assert metric_value(before, "vdeploy_generation_tokens_total") == sum(u["completion_tokens"] for u in usage)
        kill(engine, 0)
        after = httpx.get(f"{server.url}/metrics", timeout=30).text
        for counter in ("vdeploy_prompt_tokens_total", "vdeploy_generation_tokens_total",
                        "vdeploy_prefix_cache_queries_total"):
            assert metric_value(after, counter) == metric_value(before, counter), counter
        # gauges describe the replica left
        assert metric_value(after, "vdeploy_kv_cache_total_blocks") == metric_value(
            before, "vdeploy_kv_cache_total_blocks") / 2


@pytest.mark.timeout(240)
def test_adapters_loaded_after_replica_zero_died_are_served(model):
    with serving(model, enable_lora=True, max_lora_rank=8) as (engine, server):
        kill(engine, 0)
        assert load(server.url, "sql", model / "sql").status_code == 200
        assert listed(server.url) == {"tiny", "sql"}
        answer = complete(server.url, "sql")
        assert answer.status_code == 200, answer.text


@pytest.mark.timeout(240)
def test_a_load_refused_by_one_replica_is_undone_on_the_others(model):
    with serving(model, enable_lora=True, max_loras=1, max_lora_rank=8) as (engine, server):
        asyncio.run(engine.replicas[1].load_lora("held", str(model / "chat")))  # replica 1's only slot is taken
        refused = load(server.url, "sql", model / "sql")
        assert refused.status_code == 400 and "slots are in use" in refused.json()["error"]["message"]
        assert "sql" not in engine.replicas[0].lora_adapters
        assert listed(server.url) == {"tiny"}

        asyncio.run(engine.replicas[1].unload_lora("held"))
        assert load(server.url, "sql", model / "sql").status_code == 200  # not "already loaded"
        assert all("sql" in r.lora_adapters for r in engine.replicas)
        assert listed(server.url) == {"tiny", "sql"}
        assert complete(server.url, "sql").status_code == 200

        assert unload(server.url, "sql").status_code == 200
        assert not any("sql" in r.lora_adapters for r in engine.replicas)
        assert unload(server.url, "sql").status_code == 404


@pytest.mark.timeout(240)
def test_unload_reaches_every_replica_that_has_the_adapter(model):
    with serving(model, enable_lora=True, max_lora_rank=8) as (engine, server):
        asyncio.run(engine.replicas[1].load_lora("stray", str(model / "chat")))  # on replica 1 only
        assert listed(server.url) == {"tiny"}  # not servable everywhere: not listed
        assert unload(server.url, "stray").status_code == 200
        assert "stray" not in engine.replicas[1].lora_adapters


@pytest.mark.timeout(240)
def test_more_sequences_than_a_replica_queues_is_a_400_not_a_retry(model):
    # a request's n sequences all go to one replica: n beyond its queue could never be admitted, so 503 "retry
    # shortly" would have the client retry forever
    with serving(model) as (_, server):
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 2, "n": MAX_WAITING + 1}
        refused = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "too_many_sequences"
        body["n"] = MAX_WAITING
        assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).status_code == 200
