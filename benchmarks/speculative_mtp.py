"""MTP speculative decoding on DeepSeek-R1 at full width with 8 layers (FP8, random weights, one H200): batch-1
greedy decode without speculation and with MTP k = 1, 2, 3.

Random weights accept almost no MTP draft, so besides the real MTP drafts the benchmark has a REPLAY draft source
(BENCHMARK-ONLY, never part of the engine): the MTP module still runs every step (its cost is measured), but the
drafts handed to the verifier are replaced by the recorded greedy continuation of the same prompt, each draft
position independently kept correct with probability `a` and otherwise
replaced by a wrong token. That fixes the acceptance at a chosen level (a = 0, 0.5, 0.8, 1.0) and measures what
speculation costs (verify of k + 1 tokens, the MTP passes) and gains at that acceptance. The continuation is
recorded from the real-draft run of the same k (see run()); every replay run must reproduce it exactly (greedy
verification is exact whatever the drafts are); the script checks it.

    python benchmarks/speculative_mtp.py --out r1-8l-mtp.json                 # GPU (H200: ~100 GB of weights)
    python benchmarks/speculative_mtp.py --tiny --output-len 24               # CPU smoke run, tiny DeepSeek-V3
    python benchmarks/speculative_mtp.py --tiny-gpu --ks 2 --acceptance 1.0   # the same model in bf16 + FP8 on a GPU

Target (issue 18): at a = 0.8, k = 1, batch 1: >= 1.6x the non-speculative decode rate. Verification at batch 1
replays the decode CUDA graphs (k + 1 decode rows) and the MTP passes replay their own (worker/mtp_graph.py); the
per-step host sync for the drafts remains: `draft_ms_per_step` shows what drafting costs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import tempfile
import time
from pathlib import Path


def write_model_dir(root: Path, tiny: bool, layers: int, fp8: bool = False) -> Path:
    """config.json only (weights are dummy): R1's published config cut to `layers` layers (first 3 dense, as R1),
    keeping its MTP layer, or a tiny DeepSeek-V3 with one (`fp8`: with R1's block-FP8 quantization_config)."""
    if tiny:
        from vdeploy.checkpoint.synthetic import tiny_config
        from vdeploy.model_configs import config_path

        config = tiny_config("deepseek_v3", dtype="float32", overrides={"vocab_size": 512})
        if fp8:
            config["quantization_config"] = json.loads(config_path("deepseek-r1").read_text())["quantization_config"]
    else:
        from vdeploy.model_configs import config_path

        config = json.loads(config_path("deepseek-r1").read_text())
        config["num_hidden_layers"] = layers
    config["num_nextn_predict_layers"] = 1
    path = root / ("tiny-deepseek-v3-mtp" if tiny else f"deepseek-r1-{layers}l-mtp")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


class ReplayDrafts:
    """BENCHMARK-ONLY draft source: wraps the scheduler's proposal step. The real proposal (the MTP drafts, within
    the engine's limits) decides how many drafts a step carries; their values are replaced by the recorded
    continuation, each position correct with probability `acceptance` (seeded per position: reproducible)."""

    def __init__(self, propose, reference: dict[str, list[int]], acceptance: float, vocab_size: int, seed: int = 0):
        self._propose = propose
        self.reference, self.acceptance, self.vocab_size, self.seed = reference, acceptance, vocab_size, seed

    def __call__(self, req, budget: int) -> list[int]:
        real = self._propose(req, budget)
        ref = self.reference.get(req.request_id, [])
        n = len(req.output_token_ids)
        out = []
        for i in range(len(real)):
            truth = ref[n + i] if n + i < len(ref) else 0
            # a string seed is hashed deterministically (unlike hash()): the same drafts in every process
            keep = random.Random(f"{self.seed}:{req.request_id}:{n + i}").random() < self.acceptance
            out.append(truth if keep else (truth + 1) % self.vocab_size)
        return out


def decode_run(llm, request_id: str, prompt: list[int], output_len: int) -> dict:
    """One streamed greedy request; decode phase = first token to last."""
    from vdeploy.engine.sampling_params import SamplingParams

    core = llm.core
    params = SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
    before = core.stats()
    core.add_request(request_id, prompt, params)
    first = last = None
    steps, tokens = 0, []
    while core.has_unfinished_requests():
        for out in core.step():
            if out.outputs and out.outputs[0].delta_token_ids:
                now = time.perf_counter()
                first = now if first is None else first
                last, steps = now, steps + 1
                tokens = list(out.outputs[0].token_ids)
    after = core.stats()
    drafts = after.spec_draft_tokens_total - before.spec_draft_tokens_total
    accepted = after.spec_accepted_tokens_total - before.spec_accepted_tokens_total
    spec_steps = after.spec_steps_total - before.spec_steps_total
    decode_s = last - first
    return {"tokens": tokens, "decode_s": decode_s, "decode_tok_per_s": (len(tokens) - 1) / decode_s,
            "steps_after_first": steps - 1, "ms_per_step": 1e3 * decode_s / max(steps - 1, 1),
            "draft_tokens": drafts, "accepted_tokens": accepted,
            "acceptance_rate": accepted / drafts if drafts else None,
            "mean_accepted_length": 1 + accepted / spec_steps if spec_steps else None,
            "draft_s": after.spec_draft_seconds_total - before.spec_draft_seconds_total}


def run(model: Path, args, k: int, acceptances: list[float], prompts: list[list[int]]) -> list[list[dict]]:
    """One engine (one model load) for this k: the real drafts first, then the REPLAY drafts at each acceptance;
    per run the results of every prompt. k = 0: no speculation.

    The replay reference is the real-draft run of the same k, not the run without speculation: every step of both
    verifies k + 1 rows, so the target computes each token in the same kernel configurations (the GEMM tiles and
    splits are chosen per row count, and with random weights the logits are so flat that a last-bit difference can
    flip a greedy token). Against that reference the replay runs must reproduce every token."""
    with open_engine(model, args, k) as llm:
        scheduler = llm.core.scheduler
        real_propose = scheduler._propose
        vocab = llm.core.model_config.vocab_size
        decode_run(llm, "warm-up", prompts[0], 8)
        out = [[decode_run(llm, f"r{i}", p, args.output_len) for i, p in enumerate(prompts)]]
        reference = {f"r{i}": r["tokens"] for i, r in enumerate(out[0])}
        if args.repeat_reference:  # the same run again, same drafts: tells run-to-run nondeterminism from row effects
            for i, p in enumerate(prompts):
                again = decode_run(llm, f"r{i}", p, args.output_len)["tokens"]
                out[0][i]["repeat_mismatch"] = next((j for j, (a, b) in enumerate(zip(again, reference[f"r{i}"]))
                                                     if a != b), None if again == reference[f"r{i}"] else len(again))
        if k and acceptances:  # verify steps of every accepted length (kernels compile here, not in a timed run)
            scheduler._propose = ReplayDrafts(real_propose, reference, 0.5, vocab, seed=1)
            decode_run(llm, "r0", prompts[0], min(48, args.output_len))
            for acceptance in acceptances:
                scheduler._propose = ReplayDrafts(real_propose, reference, acceptance, vocab)
                runs = [decode_run(llm, f"r{i}", p, args.output_len) for i, p in enumerate(prompts)]
                for i, r in enumerate(runs):
                    ref = reference[f"r{i}"]
                    r["matches_reference"] = r["tokens"] == ref
                    r["first_mismatch"] = next((j for j, (a, b) in enumerate(zip(r["tokens"], ref)) if a != b), None)
                out.append(runs)
            if args.trace_rows:  # untimed extra runs of prompt 0: the first module whose bytes differ, eagerly
                out[0][0]["row_trace"] = trace_rows(llm, real_propose, reference, vocab, prompts[0], args)
        scheduler._propose = real_propose
    release_device_memory()  # the next engine loads the model again
    return out


def open_engine(model: Path, args, k: int):
    from vdeploy.engine.llm import LLM

    kw = {}
    if args.tiny:  # fp32 on the CPU; --tiny-gpu: the full-size path's dtypes (bf16, block FP8) on the GPU
        kw = dict(dtype="bfloat16", device="cuda") if args.tiny_gpu else dict(dtype="float32", device="cpu")
    if args.enforce_eager:
        kw["enforce_eager"] = True
    spec = {"method": "mtp", "num_speculative_tokens": k} if k else None
    return LLM(str(model), load_format="dummy", seed=0, max_model_len=args.prompt_len + args.output_len + 16,
               speculative_config=spec, **kw)


def trace_against_plain(model: Path, args, k: int, prompt: list[int]) -> dict:
    """Prompt 0 without speculation and with MTP k (real drafts), each under a RowTrace in its own engine: the
    first (decode position, module) whose output bytes differ between a plain one-row decode and row 0 of a verify
    step at the same position and token (where speculation leaves the plain tokens, and why)."""
    from row_trace import RowTrace, first_split

    traces = []
    for kk in (0, k):
        with open_engine(model, args, kk) as llm:
            decode_run(llm, "warm-up", prompt, 8)
            with RowTrace(llm.core.executor.runner.model) as trace:
                tokens = decode_run(llm, "r0", prompt, args.output_len)["tokens"]
            traces.append((trace, tokens))
        release_device_memory()
    (plain, plain_tokens), (spec, spec_tokens) = traces
    first_token = next((j for j, (a, b) in enumerate(zip(plain_tokens, spec_tokens)) if a != b), None)
    return {"k": k, "same_tokens": plain_tokens == spec_tokens, "first_differing_token": first_token,
            **first_split(plain, spec, min_position=len(prompt))}


def trace_rows(llm, real_propose, reference: dict[str, list[int]], vocab: int, prompt: list[int], args) -> dict:
    """Prompt 0's real-draft run and its replay at acceptance 1.0 again, each under a RowTrace
    (benchmarks/row_trace.py); where the replay leaves the reference, the first (decode position, module) whose
    output bytes differ between the two."""
    from row_trace import RowTrace, first_split  # beside this script, which runs from this folder

    model, scheduler = llm.core.executor.runner.model, llm.core.scheduler
    traces = []
    for propose in (real_propose, ReplayDrafts(real_propose, reference, 1.0, vocab)):
        scheduler._propose = propose
        with RowTrace(model) as trace:
            tokens = decode_run(llm, "r0", prompt, args.output_len)["tokens"]
        traces.append((trace, tokens))
    (ref_trace, ref_tokens), (replay_trace, replay_tokens) = traces
    return {"reference_reproduced": ref_tokens == reference["r0"], "replay_matches": replay_tokens == ref_tokens,
            **first_split(ref_trace, replay_trace, min_position=len(prompt))}


def release_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny DeepSeek-V3 on CPU (smoke run)")
    ap.add_argument("--tiny-gpu", action="store_true",
                    help="the tiny model on the GPU in bf16 with block FP8 weights (seconds; the full model's kernels)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--acceptance", type=float, nargs="+", default=[0.0, 0.5, 0.8, 1.0])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument("--num-prompts", type=int, default=2, help="requests run one after another (batch 1)")
    ap.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (tells a graph-only difference)")
    ap.add_argument("--repeat-reference", action="store_true",
                    help="run each k's real-draft run twice: where the second leaves the first (run-to-run determinism)")
    ap.add_argument("--trace-rows", action="store_true",
                    help="with --enforce-eager: trace prompt 0's reference and a = 1.0 replay module by module and "
                         "name the first output that differs (benchmarks/row_trace.py)")
    ap.add_argument("--trace-plain", type=int, default=0, metavar="K",
                    help="with --enforce-eager, only: trace prompt 0 without speculation and with MTP k = K (real "
                         "drafts) and name the first module whose output differs between the two")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if (args.trace_rows or args.trace_plain) and not args.enforce_eager:
        ap.error("--trace-rows / --trace-plain need --enforce-eager (CUDA-graph replays run no module hooks)")

    rng = random.Random(0)
    prompts = [[rng.randrange(10, 500) for _ in range(args.prompt_len)] for _ in range(args.num_prompts)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        args.tiny = args.tiny or args.tiny_gpu
        model = write_model_dir(Path(tmp), args.tiny, args.layers, fp8=args.tiny_gpu)

        def record(label: str, k: int, acceptance: float | None, results: list[dict]) -> dict:
            tok_s = sum(r["decode_tok_per_s"] for r in results) / len(results)
            row = {"run": label, "k": k, "replay_acceptance": acceptance, "decode_tok_per_s": round(tok_s, 2),
                   "ms_per_step": round(sum(r["ms_per_step"] for r in results) / len(results), 3)}
            if acceptance is None:  # informative: batch invariance across row counts is not promised
                row["same_tokens_as_no_speculation"] = [r["tokens"] for r in results] == no_spec_tokens
                if k and not row["same_tokens_as_no_speculation"]:  # the first output index that differs, per prompt
                    row["first_mismatch_no_speculation"] = [
                        next((j for j, (a, b) in enumerate(zip(r["tokens"], ref)) if a != b), None)
                        for r, ref in zip(results, no_spec_tokens)]
                if "row_trace" in results[0]:
                    row["row_trace"] = results[0]["row_trace"]
                if "repeat_mismatch" in results[0]:  # None: the repeated run gave the same tokens
                    row["repeat_mismatch"] = [r["repeat_mismatch"] for r in results]
            else:  # exactness: greedy verification keeps the target's tokens whatever the drafts are
                row["identical_tokens"] = all(r["matches_reference"] for r in results)
                if not row["identical_tokens"]:  # where each prompt's tokens left the reference (output index)
                    row["first_mismatch"] = [r["first_mismatch"] for r in results]
            drafts = sum(r["draft_tokens"] for r in results)
            if drafts:
                accepted = sum(r["accepted_tokens"] for r in results)
                mean_len = sum(r["mean_accepted_length"] for r in results) / len(results)
                row.update(acceptance_rate=round(accepted / drafts, 4), mean_accepted_length=round(mean_len, 3),
                           draft_ms_per_step=round(1e3 * sum(r["draft_s"] for r in results)
                                                   / sum(r["steps_after_first"] for r in results), 3))
            row["speedup"] = round(tok_s / runs[0]["decode_tok_per_s"], 3) if runs else 1.0
            runs.append(row)
            print(json.dumps(row), flush=True)
            return row

        if args.trace_plain:
            result = trace_against_plain(model, args, args.trace_plain, prompts[0])
            print(json.dumps(result), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            return
        base = run(model, args, 0, [], prompts)[0]
        no_spec_tokens = [r["tokens"] for r in base]
        record("no speculation", 0, None, base)
        for k in args.ks:
            real, *replays = run(model, args, k, args.acceptance, prompts)
            record(f"MTP k={k} (real drafts of random weights)", k, None, real)
            for a, results in zip(args.acceptance, replays):
                record(f"MTP k={k}, REPLAY drafts a={a} (benchmark-only)", k, a, results)
    import torch

    report = {"benchmark": "speculative_mtp", "model": model.name, "weights": "dummy (seeded random), FP8 as R1"
              if not args.tiny else "dummy tiny, bf16 + block FP8" if args.tiny_gpu else "dummy tiny fp32", "batch": 1, "prompt_len": args.prompt_len,
              "output_len": args.output_len, "num_prompts": args.num_prompts, "enforce_eager": args.enforce_eager,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "replay": "benchmark-only draft source: the greedy continuation recorded from the real-draft run of "
                        "the same k, each draft correct with probability a (MTP module still runs)", "runs": runs}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not all(r.get("identical_tokens", True) for r in runs):
        raise SystemExit("a replay run changed the greedy tokens of its reference (see identical_tokens above)")


if __name__ == "__main__":
    main()
