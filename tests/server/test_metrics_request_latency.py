"""/metrics' request histograms cover every request /metrics counts as finished: the end-to-end latency histogram
gains one observation per vdeploy_request_success_total increment, beam search included (its beams are scored by
many engine requests, so no first token is ever streamed and TTFT/TPOT do not apply to it)."""

from __future__ import annotations

SUCCESS = "vdeploy_request_success_total"
E2E_COUNT = "vdeploy_e2e_request_latency_seconds_count"
E2E_SUM = "vdeploy_e2e_request_latency_seconds_sum"


def _finished(metric) -> float:
    return sum(metric(SUCCESS, f'finish_reason="{reason}"') for reason in ("length", "stop")
               if _has(metric, reason))


def _has(metric, reason: str) -> bool:
    try:
        metric(SUCCESS, f'finish_reason="{reason}"')
        return True
    except KeyError:
        return False


def test_beam_search_requests_are_observed_in_the_e2e_histogram(client, metric):
    client.completions.create(model="tiny", prompt="Hello world", max_tokens=3)  # the success series exist
    finished, observed, latency = _finished(metric), metric(E2E_COUNT), metric(E2E_SUM)
    client.completions.create(model="tiny", prompt=["Hello world", "The capital of"], max_tokens=4, n=2,
                              extra_body={"use_beam_search": True})
    assert _finished(metric) == finished + 2  # one per prompt
    assert metric(E2E_COUNT) == observed + 2
    assert metric(E2E_SUM) > latency
