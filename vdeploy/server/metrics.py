"""Prometheus metrics for one server instance.

Everything lives in a CollectorRegistry owned by the app (never prometheus_client's global registry), so two
servers in one process, as in the tests, keep separate numbers. Engine state (queues, KV cache, prefix cache, token
totals) is read from `engine.stats()` at scrape time; request latencies are observed by the serving code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "vdeploy"

# Buckets in seconds. TTFT spans a cached short prompt on a GPU (ms) to a long prefill on CPU (tens of s).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0, 300.0, 600.0)


# EngineStats' running totals, exported as counters
COUNTED = ("prefix_cache_queries", "prefix_cache_hits", "num_preemptions", "prompt_tokens_total",
           "generation_tokens_total", "spec_draft_tokens_total", "spec_accepted_tokens_total", "spec_steps_total",
           "spec_draft_seconds_total")


class EngineStatsCollector(Collector):
    """Gauges and counters read from the engine when Prometheus scrapes. Counters count from `since` (engine stats
    taken when the server was created), so the server's own warm-up request is not reported as traffic, and never
    go below what an earlier scrape reported: Prometheus reads a drop as a counter reset and rate() then invents
    traffic (the data-parallel engine keeps a dead replica's totals; this holds should any engine's totals dip)."""

    def __init__(self, get_stats: Callable[[], Any], model_name: str, since: Any = None):
        self._get_stats = get_stats
        self._model = model_name
        self._offset = {name: getattr(since, name, 0) for name in COUNTED} if since is not None else {}
        self._reported = {name: 0.0 for name in COUNTED}  # the highest value each counter has shown

    def _totals(self) -> tuple[Any, dict[str, float]]:
        s = self._get_stats()
        for name in COUNTED:
            now = getattr(s, name, 0) - self._offset.get(name, 0)
            self._reported[name] = max(self._reported[name], now)
        return s, dict(self._reported)

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["model_name"])
        g.add_metric([self._model], float(value))
        return g

    def _counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        c = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["model_name"])
        c.add_metric([self._model], float(value))
        return c

    def collect(self) -> Iterator[Any]:
        s, n = self._totals()
        queries, hits = n["prefix_cache_queries"], n["prefix_cache_hits"]
        drafts, accepted, steps = n["spec_draft_tokens_total"], n["spec_accepted_tokens_total"], n["spec_steps_total"]
        yield self._gauge("num_requests_running", "Requests being generated (in the running batch).", s.num_running)
        yield self._gauge("num_requests_waiting", "Requests queued for their first schedule.", s.num_waiting)
        yield self._gauge("kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).", s.kv_usage)
        yield self._gauge("kv_cache_free_blocks", "KV-cache blocks free.", s.num_free_blocks)
        yield self._gauge("kv_cache_total_blocks", "KV-cache blocks in total.", s.num_total_blocks)
        yield self._gauge(
            "prefix_cache_hit_rate", "Prompt tokens served from the prefix cache / prompt tokens looked up.",
            hits / queries if queries else 0.0,
        )
        yield self._counter("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", queries)
        yield self._counter("prefix_cache_hits", "Prompt tokens found in the prefix cache.", hits)
        yield self._counter("num_preemptions", "Requests preempted for lack of KV blocks.", n["num_preemptions"])
        yield self._counter("prompt_tokens", "Prompt tokens processed.", n["prompt_tokens_total"])
        yield self._counter("generation_tokens", "Tokens generated.", n["generation_tokens_total"])
        yield self._counter("spec_decode_num_draft_tokens", "Speculative draft tokens verified.", drafts)
        yield self._counter("spec_decode_num_accepted_tokens", "Speculative draft tokens accepted.", accepted)
        yield self._counter("spec_decode_num_steps", "Request-steps that verified speculative drafts.", steps)
        yield self._counter("spec_decode_draft_seconds", "Time spent proposing speculative drafts.",
                            n["spec_draft_seconds_total"])
        yield self._gauge("spec_decode_acceptance_rate", "Speculative draft tokens accepted / verified.",
                          accepted / drafts if drafts else 0.0)
        yield self._gauge("spec_decode_mean_accepted_length",
                          "Tokens per speculative request-step (accepted drafts + 1).",
                          1 + accepted / steps if steps else 0.0)


@dataclass
class RequestTiming:
    """Wall-clock marks of one request, as seen by the server."""

    arrival: float
    first_token: float | None = None
    finished: float | None = None
    num_output_tokens: int = 0


@dataclass
class ServerMetrics:
    registry: CollectorRegistry
    ttft: Histogram
    tpot: Histogram
    e2e: Histogram
    finished_requests: Counter
    http_errors: Counter
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, get_engine_stats: Callable[[], Any], model_name: str) -> "ServerMetrics":
        registry = CollectorRegistry(auto_describe=True)
        registry.register(EngineStatsCollector(get_engine_stats, model_name, since=get_engine_stats()))
        labels = ["model_name"]
        return cls(
            registry=registry,
            ttft=Histogram(f"{PREFIX}_time_to_first_token_seconds", "Time to first token.", labels,
                           buckets=TTFT_BUCKETS, registry=registry),
            tpot=Histogram(f"{PREFIX}_time_per_output_token_seconds", "Mean time per output token after the first.",
                           labels, buckets=TPOT_BUCKETS, registry=registry),
            e2e=Histogram(f"{PREFIX}_e2e_request_latency_seconds", "Request latency, arrival to last token.", labels,
                          buckets=E2E_BUCKETS, registry=registry),
            finished_requests=Counter(f"{PREFIX}_request_success", "Finished requests by finish reason.",
                                      labels + ["finish_reason"], registry=registry),
            http_errors=Counter(f"{PREFIX}_request_errors", "Requests answered with an error, by HTTP status.",
                                labels + ["status"], registry=registry),
            labels={"model_name": model_name},
        )

    def observe_finished(self, timing: RequestTiming, finish_reason: str) -> None:
        self.finished_requests.labels(finish_reason=finish_reason, **self.labels).inc()
        if timing.finished is None:
            return
        # every finished request has an end-to-end latency, also one that never streamed a first token (beam
        # search scores its beams through other engine requests): the histogram then counts what the counter does
        self.e2e.labels(**self.labels).observe(timing.finished - timing.arrival)
        if timing.first_token is None:
            return
        self.ttft.labels(**self.labels).observe(timing.first_token - timing.arrival)
        if timing.num_output_tokens > 1:
            per_token = (timing.finished - timing.first_token) / (timing.num_output_tokens - 1)
            self.tpot.labels(**self.labels).observe(per_token)

    def observe_error(self, status: int) -> None:
        self.http_errors.labels(status=str(status), **self.labels).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
