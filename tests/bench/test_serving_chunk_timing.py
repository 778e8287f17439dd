"""`vdeploy bench --url` times streamed chunks as `vllm bench serve` does: every chunk that carries a choice counts
(its text may be empty: a token that ends inside a UTF-8 character, or a special token), so TTFT is the first such
chunk, ITL is one gap per later chunk, and the end-to-end latency ends at the last token chunk, not at the usage
chunk or [DONE] that follow it. Timed against a scripted real HTTP server whose chunk times the test sets."""

from __future__ import annotations

import pytest
from sse_script_server import ScriptedServer, text_chunk, usage_chunk

from vdeploy.bench.serving import run_serving_benchmark
from vdeploy.errors import VdeployError

# four tokens: the first and third decode to no text yet (partial UTF-8), then a slow usage chunk
SCRIPT = [
    (0.30, text_chunk("")),
    (0.10, text_chunk("a")),
    (0.10, text_chunk("")),
    (0.10, text_chunk("b", finish="length")),
    (0.50, usage_chunk(prompt_tokens=4, completion_tokens=4)),
]


def _bench(server: ScriptedServer, num_prompts: int = 2) -> dict:
    return run_serving_benchmark(server.url, num_prompts=num_prompts, input_len=4, output_len=4, concurrency=1,
                                 timeout_s=30)


def test_ttft_and_itl_count_chunks_without_text():
    with ScriptedServer(SCRIPT) as server:
        report = _bench(server)
    assert (report["completed"], report["failed"], report["total_output_tokens"]) == (2, 0, 8)
    # the first chunk arrives at 0.3 s even though its text is empty
    assert 270 <= report["ttft"]["median_ms"] <= 370, report["ttft"]
    # three gaps of 0.1 s per request, not one gap of 0.2 s between the two chunks with text
    assert 80 <= report["itl"]["median_ms"] <= 170, report["itl"]
    assert report["itl"]["percentiles_ms"]["p90"] <= 190, report["itl"]


def test_e2e_latency_and_tpot_end_at_the_last_token_chunk():
    with ScriptedServer(SCRIPT) as server:
        report = _bench(server)
    # the last token left at 0.6 s; the usage chunk 0.5 s later is not generation time
    assert 570 <= report["e2el"]["median_ms"] <= 800, report["e2el"]
    # TPOT = (E2E - TTFT) / (4 - 1) = 0.1 s
    assert 80 <= report["tpot"]["median_ms"] <= 150, report["tpot"]


def test_a_stream_of_tokens_without_text_is_a_success_and_one_without_choices_fails():
    silent = [(0.01, text_chunk("")), (0.01, text_chunk("", finish="length")), (0.0, usage_chunk(4, 2))]
    with ScriptedServer(silent) as server:
        report = _bench(server)
    assert (report["completed"], report["failed"], report["total_output_tokens"]) == (2, 0, 4)
    with ScriptedServer([(0.0, usage_chunk(4, 0))]) as server, pytest.raises(VdeployError, match="test request"):
        _bench(server)
