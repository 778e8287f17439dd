"""--serving: `vdeploy serve` in a subprocess (random weights, 127.0.0.1, any free port) measured by
vdeploy.bench.serving at several concurrencies, against the offline engine on the same requests.

The offline reference runs first, in this process, on exactly the requests of the highest concurrency level; its
resolved engine settings are handed to the server through VDEPLOY_* variables (which take precedence over the
profile the server would pick), so both sides run the same configuration. Each level draws its own prompts (its
own seed): no level is served from the prefix cache of another.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.engine.engine_runs import EngineOptions, open_llm, release, run_requests
from benchmarks.engine.models import engine_settings

TARGET_FRACTION_OF_OFFLINE = 0.9
SERVED_NAME = "bench"
_URL_LINE = re.compile(r"serving \S+ at (http://\S+?)/v1")
# resolved engine setting -> the VDEPLOY_* variable `vdeploy serve` reads (vdeploy.profiles.SETTINGS)
_SERVER_ENV = ("dtype", "device", "block_size", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching",
               "enable_chunked_prefill", "gpu_memory_utilization", "enforce_eager")


@dataclass(frozen=True)
class ServingPlan:
    concurrencies: tuple[int, ...] = (1, 4, 32, 256)
    input_len: int = 1000
    output_len: int = 256
    prompts_per_slot: int = 4  # each level sends max(min_prompts, prompts_per_slot x concurrency) requests
    min_prompts: int = 8
    saturate_engine: bool = True  # add a level at the engine's max_num_seqs (what "saturation" means)
    startup_timeout_s: float = 900.0
    request_timeout_s: float = 900.0
    seed: int = 3000

    def num_prompts(self, concurrency: int) -> int:
        return max(self.min_prompts, self.prompts_per_slot * concurrency)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_requests(plan: ServingPlan, concurrency: int, vocab: int) -> list[tuple[list[int], int]]:
    """The requests vdeploy.bench.serving sends at this level (same generator, same seed), for the offline run."""
    from vdeploy.bench.serving import ServingWorkload

    workload = ServingWorkload(num_prompts=plan.num_prompts(concurrency), input_len=plan.input_len,
                               output_len=plan.output_len, seed=plan.seed + concurrency, concurrency=concurrency)
    return workload.requests(vocab)


def server_environment(settings: dict[str, Any], max_model_len: int | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in _SERVER_ENV:
        value = settings.get(name)
        if value is None:
            continue
        if name == "device":
            value = "cuda" if str(value).startswith("cuda") else str(value)
        env[f"VDEPLOY_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    if max_model_len is not None:
        env["VDEPLOY_MAX_MODEL_LEN"] = str(max_model_len)
    if settings.get("device") == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU comparison must not have the server pick up a GPU
    return env


class ServerProcess:
    """`vdeploy serve` as a child process; its log goes to a file, whose URL line says the port it bound."""

    def __init__(self, model_dir: Path, env: dict[str, str], log_file: Path):
        self.log_file = log_file
        self.command = [sys.executable, "-m", "vdeploy", "serve", str(model_dir), "--load-format", "dummy",
                        "--host", "127.0.0.1", "--port", "0", "--served-model-name", SERVED_NAME,
                        "--log-level", "warning", "--drain-timeout", "5"]
        self._log = open(log_file, "w")  # noqa: SIM115 - open while the server runs; closed in stop()
        env = {**env, "COLUMNS": "200", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = _URL_LINE.search(self.log_file.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"vdeploy serve exited with {self.proc.returncode} before serving: "
                                   + self.tail())
            time.sleep(0.5)
        raise TimeoutError(f"vdeploy serve did not report its URL within {timeout_s:.0f} s: " + self.tail())

    def tail(self, lines: int = 15) -> str:
        return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # drains, then exits 0
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode


def run_serving(model_dir: Path, options: EngineOptions, plan: ServingPlan, out_dir: Path,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    from vdeploy.bench.serving import run_serving_benchmark

    llm = open_llm(str(model_dir), options)
    try:
        vocab = llm.core.model_config.vocab_size
        settings = engine_settings(llm)
        # saturation: as many requests in flight as the engine batches (its max_num_seqs), not fewer — the offline
        # engine runs the same requests with every one of them admitted at once
        saturation = max(plan.concurrencies)
        if plan.saturate_engine:
            saturation = max(saturation, int(settings.get("max_num_seqs") or 0))
        concurrencies = sorted({*plan.concurrencies, saturation})
        requests = level_requests(plan, saturation, vocab)
        run_requests(llm, [p[:64] for p, _ in requests[:8]], [4] * min(8, len(requests)), tag="warmup")
        offline = run_requests(llm, [p for p, _ in requests], [n for _, n in requests], tag="offline")
    finally:
        release(llm)
    log(f"  offline reference at {saturation} requests: {offline.output_tokens_per_s:,.1f} output tok/s")

    server = ServerProcess(model_dir, server_environment(settings, options.max_model_len), out_dir / "server.log")
    levels: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        url = server.wait_for_url(plan.startup_timeout_s)
        startup_s = time.perf_counter() - started
        log(f"  server up at {url} after {startup_s:.1f} s")
        for concurrency in concurrencies:
            try:
                report = run_serving_benchmark(
                    url, model=SERVED_NAME, num_prompts=plan.num_prompts(concurrency), input_len=plan.input_len,
                    output_len=plan.output_len, seed=plan.seed + concurrency, concurrency=concurrency,
                    vocab_size=vocab, timeout_s=plan.request_timeout_s)
                levels.append({"concurrency": concurrency, **report})
                log(f"  concurrency {concurrency}: {report['output_throughput']:,.1f} output tok/s, "
                    f"TTFT median {report['ttft']['median_ms']:.1f} ms, "
                    f"TPOT median {report['tpot']['median_ms']:.2f} ms, {report['failed']} failed")
            except Exception as e:  # noqa: BLE001 - recorded; the other levels still run
                levels.append({"concurrency": concurrency, "error": f"{type(e).__name__}: {e}"})
                log(f"  concurrency {concurrency}: FAILED {type(e).__name__}: {e}")
    finally:
        exit_code = server.stop()

    at_saturation = next((lv for lv in levels if lv["concurrency"] == saturation and "error" not in lv), None)
    metrics: dict[str, Any] = {"offline_output_tokens_per_s": offline.output_tokens_per_s,
                               "server_exit_code": exit_code, "server_startup_s": round(startup_s, 2)}
    if at_saturation is not None and offline.output_tokens_per_s > 0:
        metrics["serving_output_tokens_per_s_at_saturation"] = at_saturation["output_throughput"]
        metrics["fraction_of_offline_at_saturation"] = (
            at_saturation["output_throughput"] / offline.output_tokens_per_s)
    return {
        "workload": {**plan.to_dict(), "concurrencies": concurrencies, "saturation_concurrency": saturation},
        "engine_settings": settings,
        "server_command": " ".join(server.command),
        "offline": offline.to_dict(),
        "levels": levels,
        "errors": [f"concurrency {lv['concurrency']}: {lv['error']}" for lv in levels if "error" in lv],
        "metrics": metrics,
        "target": {"metric": "fraction_of_offline_at_saturation", "min": TARGET_FRACTION_OF_OFFLINE},
    }
