"""Serving benchmark against a running OpenAI-compatible endpoint (`vdeploy bench --url URL`), reporting what
`vllm bench serve` reports, so numbers compare like for like: time to first token (TTFT), time per output token
after the first (TPOT), inter-token latency between streamed chunks (ITL), end-to-end latency (E2EL), each as mean /
median / p99 in milliseconds, plus request and token throughput.

Every request is a streamed /v1/completions call whose prompt is `input_len` random token ids (so the prompt length
is exact without a client-side tokenizer) and which generates exactly `output_len` tokens (ignore_eos, greedy).
Requests start at a Poisson `request_rate` (inf: all at once) and at most `concurrency` are in flight.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from vdeploy.bench.offline import drawn_length

DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)
SPECIAL_TOKEN_MARGIN = 100  # many vocabularies put control tokens first; prompts draw ids above them
MAX_PROMPT_TOKEN_ID = 10_000  # without a known vocabulary size, ids below this are valid for every served model


@dataclass(frozen=True)
class ServingWorkload:
    num_prompts: int = 64
    input_len: int = 128
    output_len: int = 128
    random_range_ratio: float = 0.0  # lengths uniform in [len * (1 - r), len * (1 + r)]
    seed: int = 0
    request_rate: float = math.inf  # requests per second (Poisson arrivals); inf sends them all at once
    concurrency: Optional[int] = None  # most requests in flight; None: unlimited

    def requests(self, vocab_size: Optional[int]) -> list[tuple[list[int], int]]:
        rng = random.Random(self.seed)
        top = min(vocab_size or MAX_PROMPT_TOKEN_ID, MAX_PROMPT_TOKEN_ID) - 1
        low = min(SPECIAL_TOKEN_MARGIN, top // 4)
        r = self.random_range_ratio
        out = []
        for _ in range(self.num_prompts):
            in_len, out_len = drawn_length(rng, self.input_len, r), drawn_length(rng, self.output_len, r)
            out.append(([rng.randint(low, top) for _ in range(in_len)], out_len))
        return out


@dataclass
class RequestRecord:
    prompt_len: int
    ok: bool = False
    output_tokens: int = 0
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    error: str = ""


@dataclass
class LatencyStats:
    mean_ms: float
    median_ms: float
    std_ms: float
    percentiles_ms: dict[str, float]  # "p99" -> ms

    @classmethod
    def of(cls, seconds: list[float], percentiles: tuple[float, ...]) -> "LatencyStats":
        if not seconds:
            return cls(0.0, 0.0, 0.0, {_pname(p): 0.0 for p in percentiles})
        ms = sorted(s * 1000 for s in seconds)
        return cls(
            mean_ms=statistics.fmean(ms),
            median_ms=statistics.median(ms),
            std_ms=statistics.pstdev(ms),
            percentiles_ms={_pname(p): _percentile(ms, p) for p in percentiles},
        )


@dataclass
class ServingReport:
    url: str
    model: str
    workload: ServingWorkload
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float  # requests/s
    output_throughput: float  # output tokens/s
    total_token_throughput: float  # (input + output) tokens/s
    ttft: LatencyStats
    tpot: LatencyStats
    itl: LatencyStats
    e2el: LatencyStats
    errors: list[str] = field(default_factory=list)  # the first few distinct failure messages

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["workload"]["request_rate"] = _finite_or_str(self.workload.request_rate)
        return data


def _pname(p: float) -> str:
    return f"p{p:g}"


def _percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def _finite_or_str(x: float) -> Any:
    return x if math.isfinite(x) else "inf"


async def _one_request(session: Any, url: str, model: str, prompt: list[int], output_len: int,
                       api_key: Optional[str]) -> RequestRecord:
    record = RequestRecord(prompt_len=len(prompt))
    body = {
        "model": model, "prompt": prompt, "max_tokens": output_len, "min_tokens": output_len, "ignore_eos": True,
        "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    last = start
    chunks = 0
    try:
        async with session.post(f"{url}/v1/completions", json=body, headers=_auth(api_key)) as response:
            if response.status != 200:
                record.error = f"HTTP {response.status}: {(await response.read()).decode(errors='replace')[:200]}"
                return record
            async for raw in response.content:  # one SSE line at a time
                if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                    continue
                payload = json.loads(raw[6:])
                if "error" in payload:
                    record.error = payload["error"].get("message", "error in stream")
                    return record
                now = time.perf_counter()
                # as `vllm bench serve` times it: every chunk with a choice is a token chunk, even one whose text
                # is empty (a token that ends inside a UTF-8 character, a special token); the usage chunk is not
                if payload.get("choices"):
                    if chunks == 0:
                        record.ttft_s = now - start
                    else:
                        record.itl_s.append(now - last)
                    chunks += 1
                    last = now
                if payload.get("usage"):  # the last count a server sends wins
                    record.output_tokens = int(payload["usage"]["completion_tokens"])
        record.e2e_s = last - start  # ends at the last token chunk, not at the usage chunk or [DONE] after it
        record.output_tokens = record.output_tokens or chunks
        record.ok = chunks > 0
        if not record.ok:
            record.error = "the stream carried no token chunk"
    except Exception as e:  # a failed request is counted, not fatal to the benchmark
        record.error = f"{type(e).__name__}: {e}"
    return record


def _auth(api_key: Optional[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def _discover(session: Any, url: str, api_key: Optional[str]) -> tuple[str, Optional[int]]:
    async with session.get(f"{url}/v1/models", headers=_auth(api_key)) as response:
        response.raise_for_status()
        card = (await response.json())["data"][0]
    return card["id"], card.get("vocab_size")


async def _run(url: str, workload: ServingWorkload, model: Optional[str], api_key: Optional[str],
               vocab_size: Optional[int], percentiles: tuple[float, ...], timeout_s: float) -> ServingReport:
    # aiohttp, as `vllm bench serve` uses: its client spends ~4x less CPU per streamed chunk than httpx's (61 vs
    # 217 us on the CPU box, 2026-12-07), and a client that saturates its core caps the throughput it measures
    from vdeploy.errors import VdeployError

    try:
        import aiohttp
    except ImportError:
        raise VdeployError("the serving benchmark needs aiohttp", hint="pip install 'vdeploy[serve]'",
                           exit_code=1) from None

    url = url.rstrip("/").removesuffix("/v1")
    limit = workload.concurrency or workload.num_prompts
    connector = aiohttp.TCPConnector(limit=limit + 1)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            served, served_vocab = await _discover(session, url, api_key)
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, IndexError, ValueError) as e:
            if isinstance(e, aiohttp.ClientResponseError) and e.status == 401:
                raise VdeployError(f"{url} requires an API key" + (" (the one given was refused)" if api_key else ""),
                                   hint="set VDEPLOY_API_KEY (or OPENAI_API_KEY) to the server's --api-key",
                                   exit_code=1) from None
            raise VdeployError(f"cannot reach an OpenAI-compatible server at {url}: {e}",
                               hint="check --url (the server root, e.g. http://127.0.0.1:8000) and --api-key",
                               exit_code=1) from None
        model = model or served
        requests = workload.requests(vocab_size or served_vocab)
        # one short request first: fails fast on a wrong URL / key / model, and warms the server
        probe = await _one_request(session, url, model, requests[0][0][:16], 2, api_key)
        if not probe.ok:
            raise VdeployError(f"the test request to {url} failed: {probe.error}",
                               hint="check --url, the API key and that the server is up", exit_code=1)

        gate = asyncio.Semaphore(limit)
        rng = random.Random(workload.seed + 1)

        async def gated(prompt: list[int], output_len: int) -> RequestRecord:
            async with gate:
                return await _one_request(session, url, model, prompt, output_len, api_key)

        tasks = []
        start = time.perf_counter()
        for prompt, output_len in requests:
            tasks.append(asyncio.ensure_future(gated(prompt, output_len)))
            if math.isfinite(workload.request_rate):
                await asyncio.sleep(rng.expovariate(workload.request_rate))
        records = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start

    done = [r for r in records if r.ok]
    tpots = [(r.e2e_s - r.ttft_s) / (r.output_tokens - 1) for r in done if r.output_tokens > 1]
    input_tokens = sum(r.prompt_len for r in done)
    output_tokens = sum(r.output_tokens for r in done)
    errors = list(dict.fromkeys(r.error for r in records if not r.ok))[:5]
    return ServingReport(
        url=url, model=model, workload=workload, completed=len(done), failed=len(records) - len(done),
        duration_s=duration, total_input_tokens=input_tokens, total_output_tokens=output_tokens,
        request_throughput=len(done) / duration, output_throughput=output_tokens / duration,
        total_token_throughput=(input_tokens + output_tokens) / duration,
        ttft=LatencyStats.of([r.ttft_s for r in done], percentiles),
        tpot=LatencyStats.of(tpots, percentiles),
        itl=LatencyStats.of([x for r in done for x in r.itl_s], percentiles),
        e2el=LatencyStats.of([r.e2e_s for r in done], percentiles),
        errors=errors,
    )


def benchmark_serving(url: str, workload: ServingWorkload, *, model: Optional[str] = None,
                      api_key: Optional[str] = None, vocab_size: Optional[int] = None,
                      percentiles: tuple[float, ...] = DEFAULT_PERCENTILES, timeout_s: float = 600.0) -> ServingReport:
    """Run the workload against `url` (the server root, with or without /v1) and measure it."""
    return asyncio.run(_run(url, workload, model, api_key, vocab_size, percentiles, timeout_s))


def run_serving_benchmark(url: str, *, model: Optional[str] = None, num_prompts: int = 64, input_len: int = 128,
                          output_len: int = 128, random_range_ratio: float = 0.0, seed: int = 0,
                          concurrency: Optional[int] = None, request_rate: float = math.inf,
                          api_key: Optional[str] = None, vocab_size: Optional[int] = None,
                          percentiles: tuple[float, ...] = DEFAULT_PERCENTILES,
                          timeout_s: float = 600.0) -> dict[str, Any]:
    """`vdeploy bench --url`: the report as a JSON-ready dict (schema in docs/serving.md). Without `api_key`,
    $VDEPLOY_API_KEY or $OPENAI_API_KEY is sent when set."""
    if api_key is None:  # like the openai client: the key comes from the environment unless given
        api_key = os.environ.get("VDEPLOY_API_KEY") or os.environ.get("OPENAI_API_KEY")
    workload = ServingWorkload(num_prompts=num_prompts, input_len=input_len, output_len=output_len,
                               random_range_ratio=random_range_ratio, seed=seed, request_rate=request_rate,
                               concurrency=concurrency)
    report = benchmark_serving(url, workload, model=model, api_key=api_key, vocab_size=vocab_size,
                               percentiles=percentiles, timeout_s=timeout_s)
    return {"benchmark": "serving", **report.to_dict()}


def format_serving_report(report: dict[str, Any]) -> str:
    """The report as `vllm bench serve` lays it out, for people (the dict stays the machine format)."""
    w = report["workload"]
    rows = [
        ("Successful requests", f"{report['completed']}"),
        ("Failed requests", f"{report['failed']}"),
        ("Max concurrency", f"{w['concurrency'] or 'unlimited'}"),
        ("Request rate (req/s)", f"{w['request_rate']}"),
        ("Benchmark duration (s)", f"{report['duration_s']:.2f}"),
        ("Total input tokens", f"{report['total_input_tokens']}"),
        ("Total generated tokens", f"{report['total_output_tokens']}"),
        ("Request throughput (req/s)", f"{report['request_throughput']:.2f}"),
        ("Output token throughput (tok/s)", f"{report['output_throughput']:.2f}"),
        ("Total token throughput (tok/s)", f"{report['total_token_throughput']:.2f}"),
    ]
    titles = {"ttft": "Time to First Token", "tpot": "Time per Output Token (excl. 1st token)",
              "itl": "Inter-token Latency", "e2el": "End-to-end Latency"}
    lines = [f"Serving benchmark: {report['model']} at {report['url']}"]
    lines += [f"{k:<40}{v:>12}" for k, v in rows]
    for key, title in titles.items():
        stats = report[key]
        lines.append(f"{'-' * 15}{title}{'-' * 15}")
        label = key.upper()
        lines.append(f"{'Mean ' + label + ' (ms)':<40}{stats['mean_ms']:>12.2f}")
        lines.append(f"{'Median ' + label + ' (ms)':<40}{stats['median_ms']:>12.2f}")
        for p, value in stats["percentiles_ms"].items():
            lines.append(f"{p.upper() + ' ' + label + ' (ms)':<40}{value:>12.2f}")
    if report.get("errors"):
        lines.append("errors: " + "; ".join(report["errors"]))
    return "\n".join(lines)
