"""/metrics carries speculative decoding's counters (drafts, accepted, steps, draft time) and the acceptance rate
and mean accepted length derived from them, read from EngineStats at scrape time."""

from prometheus_client import CollectorRegistry, generate_latest

from vdeploy.engine.outputs import EngineStats
from vdeploy.server.metrics import EngineStatsCollector


def test_speculative_metrics_rendered_from_engine_stats():
    stats = EngineStats(num_running=1, num_waiting=0, kv_usage=0.1, num_free_blocks=9, num_total_blocks=10,
                        prefix_cache_queries=0, prefix_cache_hits=0, num_preemptions=0, prompt_tokens_total=5,
                        generation_tokens_total=50, spec_draft_tokens_total=40, spec_accepted_tokens_total=30,
                        spec_steps_total=20, spec_draft_seconds_total=0.5)
    assert stats.spec_mean_accepted_length == 2.5
    registry = CollectorRegistry()
    registry.register(EngineStatsCollector(lambda: stats, "m"))
    text = generate_latest(registry).decode()
    for line in ('vdeploy_spec_decode_num_draft_tokens_total{model_name="m"} 40.0',
                 'vdeploy_spec_decode_num_accepted_tokens_total{model_name="m"} 30.0',
                 'vdeploy_spec_decode_num_steps_total{model_name="m"} 20.0',
                 'vdeploy_spec_decode_draft_seconds_total{model_name="m"} 0.5',
                 'vdeploy_spec_decode_acceptance_rate{model_name="m"} 0.75',
                 'vdeploy_spec_decode_mean_accepted_length{model_name="m"} 2.5'):
        assert line in text, line


def test_counters_count_from_the_servers_creation():
    """The server's warm-up request (run before create_app) is not reported as traffic."""
    from dataclasses import replace

    warmed = EngineStats(num_running=0, num_waiting=0, kv_usage=0.0, num_free_blocks=10, num_total_blocks=10,
                         prefix_cache_queries=1, prefix_cache_hits=0, num_preemptions=0, prompt_tokens_total=1,
                         generation_tokens_total=4)
    later = replace(warmed, prompt_tokens_total=11, generation_tokens_total=54, spec_draft_tokens_total=8,
                    spec_accepted_tokens_total=6, spec_steps_total=4)
    registry = CollectorRegistry()
    registry.register(EngineStatsCollector(lambda: later, "m", since=warmed))
    text = generate_latest(registry).decode()
    for line in ('vdeploy_prompt_tokens_total{model_name="m"} 10.0',
                 'vdeploy_generation_tokens_total{model_name="m"} 50.0',
                 'vdeploy_prefix_cache_queries_total{model_name="m"} 0.0',
                 'vdeploy_spec_decode_mean_accepted_length{model_name="m"} 2.5'):
        assert line in text, line
