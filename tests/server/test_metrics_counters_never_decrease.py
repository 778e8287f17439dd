"""/metrics counters never go down, whatever the engine's totals do between two scrapes: Prometheus reads a drop as
a counter reset, and rate() then reports traffic that never happened."""

from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest
from server_harness import metric_value

from vdeploy.engine.outputs import EngineStats
from vdeploy.server.metrics import EngineStatsCollector


def test_counters_hold_their_highest_value_when_the_engine_totals_dip():
    warmed = EngineStats(num_running=0, num_waiting=0, kv_usage=0.0, num_free_blocks=10, num_total_blocks=10,
                         prefix_cache_queries=4, prefix_cache_hits=0, num_preemptions=0, prompt_tokens_total=4,
                         generation_tokens_total=8)
    served = replace(warmed, prompt_tokens_total=40, generation_tokens_total=80)
    dipped = replace(warmed, prompt_tokens_total=2, generation_tokens_total=3, num_running=1)  # below the offset
    now = [served]
    registry = CollectorRegistry()
    registry.register(EngineStatsCollector(lambda: now[0], "m", since=warmed))

    def scrape() -> str:
        return generate_latest(registry).decode()

    first = scrape()
    assert metric_value(first, "vdeploy_prompt_tokens_total") == 36
    now[0] = dipped
    second = scrape()
    assert metric_value(second, "vdeploy_prompt_tokens_total") == 36
    assert metric_value(second, "vdeploy_generation_tokens_total") == 72
    assert metric_value(second, "vdeploy_num_requests_running") == 1  # gauges still follow the engine
    now[0] = replace(served, prompt_tokens_total=50)
    assert metric_value(scrape(), "vdeploy_prompt_tokens_total") == 46
