"""`vdeploy bench --url`: the serving benchmark against a live server."""

from __future__ import annotations

import pytest

from vdeploy.bench.serving import (
    LatencyStats,
    ServingWorkload,
    _percentile,
    format_serving_report,
    run_serving_benchmark,
)
from vdeploy.errors import VdeployError


def test_serving_benchmark_counts_every_token_and_reports_latencies(server, metric):
    generated_before = metric("vdeploy_generation_tokens_total")
    report = run_serving_benchmark(server.url + "/v1", num_prompts=8, input_len=10, output_len=6, concurrency=3,
                                   seed=3)
    assert report["benchmark"] == "serving" and report["model"] == "tiny"
    assert (report["completed"], report["failed"]) == (8, 0)
    assert report["total_input_tokens"] == 80 and report["total_output_tokens"] == 48  # exact: ignore_eos
    # 48 measured tokens plus the 2-token probe request
    assert metric("vdeploy_generation_tokens_total") - generated_before == 50
    for key in ("ttft", "tpot", "itl", "e2el"):
        stats = report[key]
        assert stats["mean_ms"] > 0 and set(stats["percentiles_ms"]) == {"p50", "p90", "p99"}
    assert report["e2el"]["mean_ms"] >= report["ttft"]["mean_ms"]
    assert report["output_throughput"] == pytest.approx(48 / report["duration_s"])
    assert report["workload"]["request_rate"] == "inf" and report["workload"]["concurrency"] == 3
    text = format_serving_report(report)
    assert "Successful requests" in text and "P99 TTFT (ms)" in text and "Mean TPOT (ms)" in text


def test_poisson_arrivals_complete_and_an_unreachable_url_is_a_clear_error(server):
    report = run_serving_benchmark(server.url, num_prompts=4, input_len=4, output_len=3, request_rate=40.0)
    assert (report["completed"], report["total_output_tokens"]) == (4, 12)
    assert report["workload"]["request_rate"] == 40.0
    with pytest.raises(VdeployError, match="cannot reach"):
        run_serving_benchmark("http://127.0.0.1:9", num_prompts=1, input_len=4, output_len=2, timeout_s=5)


def test_workload_lengths_and_token_ranges():
    w = ServingWorkload(num_prompts=50, input_len=20, output_len=10, random_range_ratio=0.5, seed=1)
    requests = w.requests(vocab_size=1000)
    assert len(requests) == 50
    assert all(10 <= len(p) <= 30 and 5 <= n <= 15 for p, n in requests)
    assert all(100 <= t < 1000 for p, _ in requests for t in p)  # above the control tokens, inside the vocabulary
    assert w.requests(vocab_size=1000) == requests  # seeded
    assert all(t < 10_000 for p, _ in w.requests(vocab_size=None) for t in p)


def test_percentiles_interpolate_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert _percentile(values, 50) == 2.5 and _percentile(values, 100) == 4.0 and _percentile(values, 0) == 1.0
    stats = LatencyStats.of([0.001, 0.003], (99.0,))
    assert stats.mean_ms == pytest.approx(2.0) and stats.percentiles_ms["p99"] == pytest.approx(2.98)


def test_api_key_from_the_environment(keyed_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("VDEPLOY_API_KEY", raising=False)
    with pytest.raises(VdeployError, match="requires an API key"):
        run_serving_benchmark(keyed_server.url, num_prompts=1, input_len=4, output_len=2)
    monkeypatch.setenv("VDEPLOY_API_KEY", "sk-test-key")
    report = run_serving_benchmark(keyed_server.url, num_prompts=2, input_len=4, output_len=2)
    assert (report["completed"], report["failed"]) == (2, 0)
