"""Serving against offline on the same requests, on this machine: the fraction of offline throughput that
`vdeploy serve` + `vdeploy bench --url` keep at a given concurrency (issue 14's serving target; ≥ 0.8 on CPU with the
demo model at concurrency 8).

Each repeat runs, one after the other: the offline engine (`LLM`, all requests submitted at once) with the exact
engine configuration `vdeploy serve` resolves for the model (its profile included, so the same max_num_seqs bounds
both), then `vdeploy serve` in a subprocess for each `--modes` entry (`process`: the engine core in its own process,
the default; `thread`: `--no-engine-process`, the engine in a thread of the server) measured by
`vdeploy.bench.serving` (what `vdeploy bench --url` runs) with the same prompt token ids. Repeats interleave the
runs so that a noisy shared machine spreads over all of them.

    python benchmarks/serving_vs_offline.py --out benchmarks/results/2026-12-02-cpu-serving/results.json

At GPU-like token rates (the demo model makes ~30 tokens a second here, a GPU thousands), on a tiny fast model:

    python benchmarks/serving_vs_offline.py --fast-tiny-model /tmp/fast-tiny --max-num-seqs 256 --concurrency 256 \
        --num-prompts 256 --input-len 64 --output-len 128 --modes process --out DIR/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any


def offline_tokens_per_s(engine_config: Any, requests: list[tuple[list[int], int]]) -> float:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    llm = LLM.from_engine_config(engine_config)
    try:
        params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for _, n in requests]
        prompts = [p for p, _ in requests]
        llm.generate([prompts[0][:16]], [SamplingParams(temperature=0, max_tokens=2, ignore_eos=True)])  # warm-up
        start = time.perf_counter()
        outputs = llm.generate(prompts, params)
        elapsed = time.perf_counter() - start
    finally:
        llm.close()
    return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed


def write_fast_tiny_model(path: str) -> str:
    """A one-layer, 64-wide Llama with the demo model's tokenizer (random weights): its decode step is short enough
    on a CPU that the HTTP side, not the model, decides how far serving falls behind offline, as on a GPU."""
    import json
    import shutil
    from pathlib import Path

    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
    from vdeploy.models.demo import ensure_demo_model

    demo = Path(ensure_demo_model(log=print))
    demo_config = json.loads((demo / "config.json").read_text())
    same = {k: demo_config[k] for k in ("vocab_size", "bos_token_id", "eos_token_id")}
    root = write_tiny_checkpoint(path, "llama", dtype="float32", num_shards=1, config_overrides={
        **same, "num_hidden_layers": 1, "max_position_embeddings": 2048})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo / name, root / name)
    return str(root)


def serving_report(model: str | None, mode: str, workload: Any, log_path: str,
                   max_num_seqs: int | None) -> dict[str, Any]:
    from vdeploy.bench.serving import benchmark_serving

    cmd = [sys.executable, "-m", "vdeploy", "serve", *([model] if model else []), "--port", "0",
           "--log-level", "warning", *(["--max-num-seqs", str(max_num_seqs)] if max_num_seqs else [])]
    if mode == "thread":
        cmd.append("--no-engine-process")
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            url = None
            for line in proc.stdout:
                log.write(line)
                found = re.search(r"serving \S+ at (http://127\.0\.0\.1:\d+)/v1", line)
                if found:
                    url = found.group(1)
                    break
            if url is None:
                raise RuntimeError(f"vdeploy serve did not start (see {log_path})")
            report = benchmark_serving(url, workload).to_dict()
            proc.send_signal(signal.SIGTERM)
            log.write(proc.stdout.read())
            report["server_exit_code"] = proc.wait(120)
            return report
        finally:
            if proc.poll() is None:
                proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the demo model, as `vdeploy serve`)")
    parser.add_argument("--fast-tiny-model", metavar="DIR", default=None,
                        help="write a one-layer random Llama with the demo tokenizer to DIR and serve it (the HTTP side "
                             "at GPU-like token rates; pair with --max-num-seqs)")
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-num-seqs", type=int, default=None,
                        help="override the profile's max_num_seqs on both sides (e.g. to saturate a fast tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="process,thread", help="comma-separated: process, thread")
    parser.add_argument("--git-rev", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.fast_tiny_model:
        args.model = write_fast_tiny_model(args.fast_tiny_model)

    from vdeploy.bench.offline import describe_device, git_revision
    from vdeploy.bench.serving import ServingWorkload
    from vdeploy.server.deployment import ServeOptions, resolve_deployment

    flags = {"max_num_seqs": args.max_num_seqs} if args.max_num_seqs else {}
    dep = resolve_deployment(ServeOptions(model=args.model, engine_flags=flags))
    cfg = dep.engine_config
    workload = ServingWorkload(num_prompts=args.num_prompts, input_len=args.input_len, output_len=args.output_len,
                               concurrency=args.concurrency)
    # the ids the serving benchmark sends: it draws them with the vocabulary size the server reports
    requests = workload.requests(dep.model_config.vocab_size)
    modes = [m for m in args.modes.split(",") if m]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    log_path = os.path.splitext(args.out)[0] + "-server.log"
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(cfg),
        "command": " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "git_revision": args.git_rev or git_revision(),
        "model": cfg.model,
        "profile": dep.profile.name if dep.profile else None,
        "engine_settings": {"dtype": cfg.dtype, "max_num_seqs": cfg.scheduler.max_num_seqs,
                            "max_num_batched_tokens": cfg.scheduler.max_num_batched_tokens,
                            "block_size": cfg.cache.block_size},
        "workload": {"num_prompts": args.num_prompts, "input_len": args.input_len, "output_len": args.output_len,
                     "concurrency": args.concurrency, "seed": workload.seed},
        "runs": runs,
    }
    for repeat in range(args.repeats):
        offline = offline_tokens_per_s(cfg, requests)
        runs.append({"repeat": repeat, "kind": "offline", "output_tokens_per_s": round(offline, 2)})
        print(f"[{repeat}] offline {offline:.1f} output tok/s", flush=True)
        for mode in modes:
            report = serving_report(args.model, mode, workload, log_path, args.max_num_seqs)
            tps = report["output_throughput"]
            runs.append({"repeat": repeat, "kind": f"serve-{mode}", "output_tokens_per_s": round(tps, 2),
                         "ratio_to_offline_same_repeat": round(tps / offline, 3), "failed": report["failed"],
                         "server_exit_code": report["server_exit_code"],
                         "ttft_median_ms": round(report["ttft"]["median_ms"], 1),
                         "tpot_median_ms": round(report["tpot"]["median_ms"], 1)})
            print(f"[{repeat}] serve ({mode}) {tps:.1f} output tok/s = {tps / offline:.2f} of offline", flush=True)
        summarize(result, modes)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result["summary"], indent=2))
    return 0


def summarize(result: dict[str, Any], modes: list[str]) -> None:
    runs = result["runs"]
    offline = [r["output_tokens_per_s"] for r in runs if r["kind"] == "offline"]
    summary: dict[str, Any] = {"offline_median_tokens_per_s": statistics.median(offline),
                               "offline_range": [min(offline), max(offline)]}
    for mode in modes:
        ratios = [r["ratio_to_offline_same_repeat"] for r in runs if r["kind"] == f"serve-{mode}"]
        tps = [r["output_tokens_per_s"] for r in runs if r["kind"] == f"serve-{mode}"]
        if ratios:
            summary[f"serve_{mode}"] = {"median_tokens_per_s": statistics.median(tps), "range": [min(tps), max(tps)],
                                        "ratio_median": statistics.median(ratios),
                                        "ratio_range": [min(ratios), max(ratios)]}
    result["summary"] = summary


if __name__ == "__main__":
    sys.exit(main())
