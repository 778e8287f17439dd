"""Where an engine step's time goes: wall-clock per phase of every step, GPU time of the forward pass and of the
logits + sampling (CUDA events, read after the run), and a torch-profiler table of a few pure-decode steps.

    python benchmarks/engine/step_phases.py /tmp/qwen7b --num-prompts 256 --input-len 1000 --output-len 500 \
        --label qwen7b --out $OUT [--profile-steps 8] [--max-num-seqs 256]

Phases (host wall-clock, ms per step): schedule, build (host batch), forward (launch; graph replay or eager
model), logits (lm_head launch), sample (sampling + the step's one host sync: waits for the GPU), update
(scheduler bookkeeping), outputs (detokenize + RequestOutputs), and other (the rest of execute, e.g. H2D staging
and the LLM.generate loop). Steps are split into pure-decode and mixed (prefill chunks present).
Instrumentation wraps instance attributes only; the engine code is unchanged.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

PHASES = ("schedule", "build", "forward", "logits", "sample", "update", "outputs")


class StepRecorder:
    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.current: dict[str, float] = {}
        self.steps: list[dict[str, Any]] = []
        self.events: list[tuple[Any, Any, Any]] = []  # per step: before forward, after forward, after sampling
        self._ev: list[Any] = []

    def timed(self, name: str, fn: Callable, before: Callable | None = None, after: Callable | None = None):
        def wrapper(*args, **kwargs):
            if before:
                before()
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - t
                if after:
                    after()
        return wrapper

    def event(self) -> None:
        if self.cuda:
            import torch

            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self._ev.append(e)

    def end_step(self, total: float, num_reqs: int, pure_decode: bool) -> None:
        rec = dict(self.current, total=total, num_reqs=num_reqs, pure_decode=pure_decode)
        if len(self._ev) >= 3:
            rec["_events"] = (self._ev[0], self._ev[1], self._ev[-1])
        self.steps.append(rec)
        self.current, self._ev = {}, []

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, pred in (("decode", lambda s: s["pure_decode"]), ("mixed", lambda s: not s["pure_decode"])):
            steps = [s for s in self.steps if pred(s) and s["num_reqs"] > 0]
            if not steps:
                continue
            row: dict[str, Any] = {"steps": len(steps), "median_num_reqs": statistics.median(s["num_reqs"] for s in steps)}
            for p in (*PHASES, "total"):
                row[f"{p}_ms"] = round(1e3 * statistics.median(s.get(p, 0.0) for s in steps), 3)
            row["sum_total_s"] = round(sum(s["total"] for s in steps), 3)
            if kind == "mixed":  # a few long ones among them are JIT compilation stalls
                row["slowest_ms"] = sorted((round(1e3 * s["total"], 1) for s in steps), reverse=True)[:8]
            gpu_fwd, gpu_all = [], []
            for s in steps:
                if "_events" in s:
                    a, b, c = s["_events"]
                    gpu_fwd.append(a.elapsed_time(b))
                    gpu_all.append(a.elapsed_time(c))
            if gpu_fwd:
                row["gpu_forward_ms"] = round(statistics.median(gpu_fwd), 3)
                row["gpu_forward_to_sampled_ms"] = round(statistics.median(gpu_all), 3)
            out[kind] = row
        return out


def instrument(llm: Any, rec: StepRecorder, on_step: Callable[[bool], None]) -> None:
    import vdeploy.worker.model_runner as mr

    core = llm.core
    runner = core.executor.runner
    sched = core.scheduler
    sched.schedule = rec.timed("schedule", sched.schedule)
    sched.update_from_output = rec.timed("update", sched.update_from_output)
    core._process = rec.timed("outputs", core._process)
    if not hasattr(mr, "_orig_build_host_batch"):
        mr._orig_build_host_batch = mr.build_host_batch
    mr.build_host_batch = rec.timed("build", mr._orig_build_host_batch)
    runner._forward = rec.timed("forward", runner._forward, before=rec.event, after=rec.event)
    runner.model.compute_logits = rec.timed("logits", runner.model.compute_logits)
    if runner.sampler is not None:
        runner.sampler.sample = rec.timed("sample", runner.sampler.sample, after=rec.event)
    state = {"pure": False, "n": 0}

    def counting(original):  # the engine launches through execute_async (asynchronous scheduling) or execute
        def execute(so):
            state["pure"] = all(len(r.token_ids) == 1 for r in so.requests)
            state["n"] = len(so.requests)
            return original(so)
        return execute

    core.executor.execute = counting(core.executor.execute)
    core.executor.execute_async = counting(core.executor.execute_async)
    original_step = core.step

    def step():
        state["n"] = 0
        t = time.perf_counter()
        out = original_step()
        rec.end_step(time.perf_counter() - t, state["n"], state["pure"])
        on_step(state["pure"] and state["n"] > 0)
        return out

    core.step = step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--num-prompts", type=int, default=1)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--label", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--profile-steps", type=int, default=8, help="pure-decode steps under torch.profiler (0: none)")
    p.add_argument("--profile-after", type=int, default=40, help="pure-decode steps before profiling starts")
    p.add_argument("--trace", action="store_true", help="also export a chrome trace of the profiled steps")
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--dummy-weights", choices=["normal", "uniform"], default="normal")
    p.add_argument("--temperature", type=float, default=0.0)
    args = p.parse_args(argv)

    import torch

    from vdeploy.engine.llm import LLM, build_engine_config
    from vdeploy.engine.sampling_params import SamplingParams

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config = build_engine_config(
        args.model, load_format="dummy", max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, block_size=args.block_size,
        enforce_eager=args.enforce_eager, dummy_weights=args.dummy_weights,
    )
    llm = LLM.from_engine_config(config)
    startup = time.perf_counter() - t0
    cuda = torch.cuda.is_available()
    rng = random.Random(0)
    vocab = min(llm.core.model_config.vocab_size, 32000) - 1

    def prompts(n: int, length: int) -> list[list[int]]:
        return [[rng.randint(1, vocab) for _ in range(length)] for _ in range(n)]

    llm.generate(prompts(1, 16), SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))  # warm-up

    rec = StepRecorder(cuda)
    prof_state = {"decode_steps": 0, "prof": None, "done": False}

    def on_step(pure_decode: bool) -> None:
        if not pure_decode or args.profile_steps <= 0 or prof_state["done"]:
            return
        prof_state["decode_steps"] += 1
        n = prof_state["decode_steps"]
        if n == args.profile_after:
            prof = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU]
                + ([torch.profiler.ProfilerActivity.CUDA] if cuda else []),
            )
            prof.start()
            prof_state["prof"] = prof
            prof_state["t"] = time.perf_counter()
        elif n == args.profile_after + args.profile_steps and prof_state["prof"] is not None:
            if cuda:
                torch.cuda.synchronize()
            prof_state["wall"] = time.perf_counter() - prof_state["t"]
            prof_state["prof"].stop()
            prof_state["done"] = True

    instrument(llm, rec, on_step)
    params = SamplingParams(temperature=args.temperature, max_tokens=args.output_len, ignore_eos=True)
    batch = prompts(args.num_prompts, args.input_len)
    begin = time.perf_counter()
    outs = llm.generate(batch, params)
    elapsed = time.perf_counter() - begin
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    summary = {
        "label": args.label,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "argv": sys.argv[1:],
        "startup_s": round(startup, 2),
        "elapsed_s": round(elapsed, 3),
        "output_tokens_per_s": round(generated / elapsed, 2),
        "total_tokens_per_s": round((generated + args.num_prompts * args.input_len) / elapsed, 2),
        "num_steps": len(rec.steps),
        "phases": rec.summary(),
    }
    prof = prof_state["prof"]
    if prof is not None and prof_state["done"]:
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=45, max_name_column_width=70)
        summary["profiled_steps"] = args.profile_steps
        summary["profiled_wall_ms_per_step"] = round(1e3 * prof_state["wall"] / args.profile_steps, 3)
        if cuda:
            kernel_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA")
            summary["profiled_gpu_kernel_ms_per_step"] = round(kernel_us / 1e3 / args.profile_steps, 3)
        (args.out / f"{args.label}_profile.txt").write_text(table)
        if args.trace:
            prof.export_chrome_trace(str(args.out / f"{args.label}_trace.json"))
    text = json.dumps(summary, indent=1, default=str)
    (args.out / f"{args.label}.json").write_text(text)
    print(text, flush=True)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
