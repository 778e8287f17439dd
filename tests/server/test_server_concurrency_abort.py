"""Many concurrent streaming clients, and clients that leave early: their requests are aborted and their KV blocks
come back (the /metrics gauges return to their baseline)."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

PROMPTS = ["Hello world.", "The capital of Italy", "Numbers 0123", "A server streams tokens"]
LONG = 240  # tokens a request would generate if nobody aborted it (max_model_len is 256)


def _wait_idle(metric, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metric("vdeploy_num_requests_running") == 0 and metric("vdeploy_num_requests_waiting") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the engine did not go idle")


def test_64_concurrent_streaming_clients_all_complete_correctly(server, client):
    references = [
        client.completions.create(model="tiny", prompt=p, max_tokens=12, temperature=0).choices[0].text
        for p in PROMPTS
    ]

    async def one(aclient: openai.AsyncOpenAI, i: int) -> tuple[int, str, str | None]:
        text, finish = "", None
        stream = await aclient.completions.create(model="tiny", prompt=PROMPTS[i % 4], max_tokens=12,
                                                  temperature=0, stream=True)
        async for chunk in stream:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        return i, text, finish

    async def main():
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120,
                                      http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
                                      ) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(64)))

    results = asyncio.run(main())
    assert len(results) == 64
    for i, text, finish in results:
        assert text == references[i % 4], i
        assert finish in ("length", "stop")


def _generated_during(metric, action) -> float:
    before = metric("vdeploy_generation_tokens_total")
    action()
    _wait_idle(metric)
    return metric("vdeploy_generation_tokens_total") - before


def test_client_that_leaves_mid_stream_frees_its_blocks(server, metric):
    _wait_idle(metric)
    free_baseline = metric("vdeploy_kv_cache_free_blocks")
    assert free_baseline == metric("vdeploy_kv_cache_total_blocks")

    def read_two_chunks_then_leave():
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": LONG, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = 0
            for line in lines:
                if line.startswith("data: "):
                    seen += 1
                if seen == 2:
                    # mid-stream, the request holds blocks
                    assert metric("vdeploy_kv_cache_free_blocks") < free_baseline
                    break  # leaving the `with` closes the connection

    generated = _generated_during(metric, read_two_chunks_then_leave)
    assert generated < LONG  # it was stopped, not run to the end
    assert metric("vdeploy_kv_cache_free_blocks") == free_baseline
    assert metric("vdeploy_kv_cache_usage_perc") == 0


def test_non_streaming_client_that_times_out_is_aborted(server, metric):
    _wait_idle(metric)
    free_baseline = metric("vdeploy_kv_cache_free_blocks")

    def give_up_early():
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": LONG, "ignore_eos": True}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.url}/v1/completions", json=body, timeout=0.15)

    generated = _generated_during(metric, give_up_early)
    assert generated < LONG
    assert metric("vdeploy_kv_cache_free_blocks") == free_baseline


def test_latency_histograms_and_token_counters_move(server, client, metric):
    before = metric("vdeploy_time_to_first_token_seconds_count")
    prompt_before = metric("vdeploy_prompt_tokens_total")
    reply = client.completions.create(model="tiny", prompt="Hello world", max_tokens=5, temperature=0)
    assert metric("vdeploy_time_to_first_token_seconds_count") == before + 1
    assert metric("vdeploy_e2e_request_latency_seconds_count") >= 1
    assert metric("vdeploy_time_per_output_token_seconds_count") >= 1
    assert metric("vdeploy_prompt_tokens_total") == prompt_before + reply.usage.prompt_tokens
    assert 0 <= metric("vdeploy_prefix_cache_hit_rate") <= 1
    assert metric("vdeploy_request_success_total", 'finish_reason="length"') >= 1
