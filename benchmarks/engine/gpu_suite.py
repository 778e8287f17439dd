"""The engine benchmarks of the GPU-speed issue, in one process, on random weights at real shapes:

  0. hardware ceilings: copy bandwidth and dense matmul throughput, measured in this run;
  1. decode: single stream, Llama-3.1-8B shape, 128 in / 512 out, against the memory-bandwidth bound;
  2. throughput: Qwen2-7B shape, 1000 x 1000/1000 and the nano-vllm workload; hf_peer: HF transformers generate on
     a slice of the same workload, in the same run;
  3. prefill: 8 x 4096 tokens, Llama-8B shape, against the matmul peak;
  and with --serving: `vdeploy serve` at concurrency 1, 4, 32, 256 and the engine's max_num_seqs (saturation) against the
  offline engine.

    python benchmarks/engine/gpu_suite.py --out benchmarks/results/h100 [--quick] [--only decode,prefill]
    python benchmarks/engine/gpu_suite.py --out /tmp/suite --device cpu --tiny     # the whole suite in < 1 min

A failing benchmark is recorded (error + traceback) and the next one runs; result files are rewritten after each.
Exit code 0 when every selected benchmark ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # run as a script: import this folder as benchmarks.engine, not as top-level modules
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.engine.scales import SCALES, Scale

BENCHMARKS = ("hardware", "decode", "prefill", "throughput", "hf_peer", "serving")
DEFAULT_SELECTION = ("hardware", "decode", "prefill", "throughput", "hf_peer")


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="directory for the result files")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--serving", action="store_true", help="also run the serving benchmark")
    p.add_argument("--quick", action="store_true", help="fewer requests and repeats (estimated 3-4 min on an H100)")
    p.add_argument("--tiny", action="store_true", help="tiny configs of the same families (CPU smoke run)")
    p.add_argument("--git-rev", default=None, help="revision to record (the device copy has no .git)")
    p.add_argument("--time-limit-s", type=float, default=None,
                   help="per throughput workload; longer runs stop and are marked truncated")
    p.add_argument("--budget-s", type=float, default=None,
                   help="overall wall-clock budget: throughput and HF runs are cut to fit, parts not started in "
                        "time are recorded as skipped")
    p.add_argument("--concurrency", default=None,
                   help="serving levels, e.g. 1,4,32,256 (the last is saturation; default: these and max_num_seqs)")
    p.add_argument("--serving-lens", default=None, metavar="IN/OUT",
                   help="serving prompt / output tokens, e.g. 1000/512 (default: the scale's; --quick: 1000/128)")
    p.add_argument("--no-tokenizer", action="store_true",
                   help="no synthetic tokenizer: outputs are not detokenized (serving needs one)")
    engine = p.add_argument_group("engine settings (default: the engine's)")
    engine.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    engine.add_argument("--dtype", default="auto", help="auto = bfloat16 on CUDA, float32 on CPU")
    engine.add_argument("--block-size", type=int, default=None)
    engine.add_argument("--max-num-seqs", type=int, default=None)
    engine.add_argument("--max-num-batched-tokens", type=int, default=None)
    engine.add_argument("--max-model-len", type=int, default=None)
    engine.add_argument("--gpu-memory-utilization", type=float, default=None)
    engine.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    args = p.parse_args(argv)
    selected = tuple(args.only.split(",")) if args.only else DEFAULT_SELECTION + (("serving",) if args.serving else ())
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.selected = selected
    return args


class Suite:
    def __init__(self, args: argparse.Namespace, scale: Scale, workdir: Path):
        from benchmarks.engine.engine_runs import EngineOptions
        from benchmarks.engine.report import SuiteReport, suite_metadata
        from benchmarks.engine.serving import ServingPlan

        self.args, self.scale, self.workdir = args, scale, workdir
        self.options = EngineOptions(
            device=args.device, dtype=args.dtype, block_size=args.block_size, max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens, max_model_len=args.max_model_len,
            gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager)
        self.device = resolve_device(args.device)
        self.throughput_plan = scale.throughput
        if args.time_limit_s is not None:
            self.throughput_plan = replace(self.throughput_plan, time_limit_s=args.time_limit_s)
        self.serving_plan: ServingPlan = scale.serving
        if args.concurrency:
            levels = tuple(int(c) for c in args.concurrency.split(","))
            self.serving_plan = replace(self.serving_plan, concurrencies=levels, saturate_engine=False)
        if args.serving_lens:
            input_len, output_len = (int(n) for n in args.serving_lens.split("/"))
            self.serving_plan = replace(self.serving_plan, input_len=input_len, output_len=output_len)
        models = "tiny Llama / Qwen2 configs" if args.tiny else "Llama-3.1-8B shape, Qwen2-7B shape (dummy weights)"
        self.report = SuiteReport(args.out, suite_metadata(device_name(self.device), args.git_rev or git_rev(),
                                                           scale.name, models))
        self.ceilings = None
        self.model_dirs: dict[str, Any] = {}
        self.deadline = None if args.budget_s is None else time.perf_counter() + args.budget_s

    def time_cap(self, share: float) -> float | None:
        """A share of the budget left (None without --budget-s); never below a few seconds of measurement."""
        if self.deadline is None:
            return None
        return max(5.0, (self.deadline - time.perf_counter()) * share)

    def model_dir(self, role: str) -> Any:
        """The role's model directory, written on first use (inside a part, so that a failure is recorded)."""
        if role not in self.model_dirs:
            from benchmarks.engine.models import prepare_model_dir

            self.model_dirs[role] = prepare_model_dir(role, self.workdir, tiny=self.args.tiny,
                                                      tokenizer=not self.args.no_tokenizer)
        return self.model_dirs[role]

    def run_part(self, name: str, body: Callable[[], dict[str, Any]]) -> bool:
        start = time.perf_counter()
        if self.deadline is not None and start >= self.deadline:
            self.report.record(name, {"status": "skipped", "error": "the --budget-s time budget was spent",
                                      "elapsed_s": 0.0, "real_shape": not self.args.tiny})
            log(f"[suite] {name}: skipped (budget spent)")
            return False
        log(f"[suite] {name} ...")
        try:
            record = {"status": "ok", **body()}
            if record.get("errors"):  # some sub-runs failed (a workload, a concurrency level): keep the rest
                record["status"] = "partial"
        except Exception as e:  # noqa: BLE001 - recorded; the suite goes on with the next benchmark
            record = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            log(f"[suite] {name} FAILED: {record['error']}")
        record["elapsed_s"] = round(time.perf_counter() - start, 2)
        record["real_shape"] = not self.args.tiny
        self.report.record(name, record)
        log(f"[suite] {name}: {record['status']} in {record['elapsed_s']:.1f} s")
        return record["status"] == "ok"

    # ---- the parts ------------------------------------------------------------------------------------------
    def hardware(self) -> dict[str, Any]:
        import torch

        from vdeploy.bench.hardware import measure_ceilings

        dtype = matmul_dtype(self.args.dtype, self.device)
        self.ceilings = measure_ceilings(torch.device(self.device), copy_bytes=self.scale.copy_bytes,
                                         matmul_n=self.scale.matmul_n, dtype=dtype, repeats=self.scale.repeats_hw)
        c = self.ceilings
        log(f"  copy {c.copy_bandwidth_bytes_per_s / 1e12:.3f} TB/s, matmul {c.matmul_flops_per_s / 1e12:.2f} TFLOP/s")
        return {"metrics": c.to_dict()}

    def llama_parts(self, selected: tuple[str, ...]) -> None:
        from benchmarks.engine.decode import run_decode
        from benchmarks.engine.engine_runs import open_llm, release
        from benchmarks.engine.models import engine_settings
        from benchmarks.engine.prefill import run_prefill

        s, llm = self.scale, None
        try:
            def build() -> Any:
                nonlocal llm
                if llm is None:
                    llm = open_llm(str(self.model_dir("llama8b").path), self.options)
                return llm

            def with_context(result: dict[str, Any]) -> dict[str, Any]:
                return {"model": self.model_dir("llama8b").to_dict(), "engine_settings": engine_settings(llm),
                        **result}

            if "decode" in selected:
                self.run_part("decode", lambda: with_context(run_decode(
                    build(), self.ceilings, prompt_len=s.decode_prompt_len, output_len=s.decode_output_len,
                    repeats=s.repeats, seed=100)))
            if "prefill" in selected:
                self.run_part("prefill", lambda: with_context(run_prefill(
                    build(), self.ceilings, num_prompts=s.prefill_prompts, prompt_len=s.prefill_len,
                    repeats=s.repeats, seed=200)))
        finally:
            release(llm)

    def qwen_parts(self, selected: tuple[str, ...]) -> None:
        from benchmarks.engine.engine_runs import open_llm, release
        from benchmarks.engine.models import engine_settings
        from benchmarks.engine.throughput import TARGET_OUTPUT_TOKENS_PER_S, run_engine_throughput, run_hf_peer

        plan = self.throughput_plan
        engine_result: dict[str, Any] = {}
        peer_dtype, peer_device, vocab = None, None, None

        def throughput() -> dict[str, Any]:
            llm, model = None, self.model_dir("qwen7b")
            try:
                llm = open_llm(str(model.path), self.options)
                settings = engine_settings(llm)
                nonlocal peer_dtype, peer_device, vocab
                peer_dtype, peer_device = settings["dtype"], settings["device"]
                vocab = llm.core.model_config.vocab_size
                # of the budget left when each starts: fixed 40%, nano 30%, the HF slice 15% (HF itself comes after)
                shares = {"fixed": 0.4, "nano": 0.3, "hf_slice": 0.15}
                engine_result.update(run_engine_throughput(llm, plan, log, lambda w: self.time_cap(shares[w])))
            finally:
                release(llm)
            return {"model": model.to_dict(), "engine_settings": settings, "plan": plan.to_dict(),
                    "workloads": engine_result,
                    "errors": [f"{k}: {v['error']}" for k, v in engine_result.items() if "error" in v],
                    "target": {"workload": "fixed", "metric": "output_tokens_per_s", "min": TARGET_OUTPUT_TOKENS_PER_S}}

        def hf_peer() -> dict[str, Any]:
            from vdeploy.config import ModelConfig

            model = self.model_dir("qwen7b")
            dtype = peer_dtype or matmul_dtype_name(self.args.dtype, self.device)
            peer = run_hf_peer(str(model.path), peer_device or self.device, dtype, plan,
                               vocab or ModelConfig.from_path(model.path).vocab_size, self.time_cap(0.8))
            metrics = dict(peer)
            ours = engine_result.get("hf_slice", {}).get("output_tokens_per_s")
            if ours and peer["output_tokens_per_s"]:
                metrics["vdeploy_same_slice_output_tokens_per_s"] = ours
                metrics["speedup_same_slice"] = ours / peer["output_tokens_per_s"]
            fixed = engine_result.get("fixed", {}).get("output_tokens_per_s")
            if fixed and peer["output_tokens_per_s"]:
                metrics["speedup_vs_fixed_workload"] = fixed / peer["output_tokens_per_s"]
            log(f"  HF generate: {peer['output_tokens_per_s']:,.1f} output tok/s in {peer['elapsed_s']:.1f} s")
            return {"model": model.to_dict(), "metrics": metrics}

        if "throughput" in selected:
            self.run_part("throughput", throughput)
        if "hf_peer" in selected:
            self.run_part("hf_peer", hf_peer)
            release(None)  # the HF model's memory, also when generate failed

    def serving(self) -> dict[str, Any]:
        from benchmarks.engine.serving import run_serving

        model = self.model_dir("llama8b")
        return {"model": model.to_dict(), **run_serving(model.path, self.options, self.serving_plan,
                                                          self.args.out, log)}

    def run(self) -> bool:
        sel = self.args.selected
        ok = True
        if "hardware" in sel or "decode" in sel or "prefill" in sel:
            ok &= self.run_part("hardware", self.hardware)  # the decode and prefill limits come from this run
        if "decode" in sel or "prefill" in sel:
            self.llama_parts(sel)
        if "throughput" in sel or "hf_peer" in sel:
            self.qwen_parts(sel)
        if "serving" in sel:
            self.run_part("serving", self.serving)
        return ok and all(r["status"] == "ok" for r in self.report.benchmarks.values())


def resolve_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def matmul_dtype_name(dtype: str, device: str) -> str:
    """The engine's compute dtype: what `auto` resolves to (vdeploy.worker.device.resolve_dtype_name)."""
    if dtype != "auto":
        return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}.get(dtype, dtype)
    return "bfloat16" if device == "cuda" else "float32"


def matmul_dtype(dtype: str, device: str) -> Any:
    import torch

    return getattr(torch, matmul_dtype_name(dtype, device))


def device_name(device: str) -> str:
    from vdeploy.bench.offline import describe_device
    from vdeploy.config import EngineConfig

    return describe_device(EngineConfig(model="", device=device))


def git_rev() -> str | None:
    from vdeploy.bench.offline import git_revision

    return git_revision()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = SCALES["tiny" if args.tiny else "quick" if args.quick else "full"]
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vdeploy-suite-") as workdir:
        suite = Suite(args, scale, Path(workdir))
        log(f"[suite] {suite.report.meta['device']} · scale {scale.name} · {', '.join(args.selected)}")
        ok = suite.run()
    from benchmarks.engine.report import summary_rows, text_table

    log("")
    log(text_table(summary_rows(suite.report.benchmarks)))
    log(f"\n[suite] {'all ok' if ok else 'SOME PARTS FAILED'} in {time.perf_counter() - start:.1f} s; "
        f"results in {args.out}/ (results.json, results.md, <benchmark>.json)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
