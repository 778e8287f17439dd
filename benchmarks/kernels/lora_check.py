"""Multi-LoRA on the GPU: the grouped LoRA kernel against its torch twin at Llama-3.1-8B shapes, its time next to
the base projection it rides on, and the engine (CUDA graphs on and off) against HF + peft with the adapters merged.

    PYTHONPATH=/tmp/shim:$PWD python benchmarks/kernels/lora_check.py --out $OUT/lora_check.json

1. Kernel vs twin (bf16, 4 slots of rank 16; fused layers as the engine holds them: qkv 3 sub-projections, gate_up 2):
   qkv_proj 4096 -> 6144, o_proj 4096 -> 4096, gate_up_proj 4096 -> 28672, down_proj 14336 -> 4096, on a decode
   batch of 256 tokens (mixed adapters, a quarter on the base model), the same batch cut one run per token (what a
   CUDA graph replays) and a prefill of 4 x 512 tokens. Relative error vs the fp32 twin, bound KERNEL_TOL.
2. Timing (CUDA events, median of 50): add_lora per call at 1 / 32 / 256 decode tokens and a 2048-token prefill,
   next to the layer's base bf16 GEMM, and the ratio.
3. End to end (needs peft): a tiny fp32 Llama with two adapters and the base model batched together, the engine
   with CUDA graphs and with --enforce-eager: greedy tokens equal HF + peft merged.
Exit code 1 when a check fails; the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

KERNEL_TOL = 2e-2  # bf16 inputs and output vs the fp32 twin: a few bf16 roundings
MAX_LORAS, RANK = 4, 16
LAYERS = {  # name: (in, out, fused sub-projections)
    "qkv_proj": (4096, 6144, 3),
    "o_proj": (4096, 4096, 1),
    "gate_up_proj": (4096, 28672, 2),
    "down_proj": (14336, 4096, 1),
}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30)).item()


def runs_of(token_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    slots = token_slots.tolist()
    starts = [i for i in range(len(slots)) if i == 0 or slots[i] != slots[i - 1]]
    device = token_slots.device
    return (torch.tensor(starts + [len(slots)], dtype=torch.int32, device=device),
            torch.tensor([slots[i] for i in starts], dtype=torch.int32, device=device))


def batches() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    decode = torch.randint(-1, MAX_LORAS, (256,), generator=gen, dtype=torch.int32)
    prefill = torch.tensor(sum(([s] * 512 for s in (2, -1, 0, 3)), []), dtype=torch.int32)
    return {"decode256": decode, "prefill4x512": prefill}


def layer_weights(k: int, n: int, subs: int):
    a = (torch.randn(MAX_LORAS, subs * RANK, k, device="cuda") / k**0.5).to(torch.bfloat16)  # [L, S·R, K]
    b = (torch.randn(MAX_LORAS, n, subs * RANK, device="cuda") * 0.05).to(torch.bfloat16)  # [L, N, S·R]
    return a, b


def check_kernel(results: list) -> None:
    from vdeploy_kernels import reference
    from vdeploy_kernels.lora import add_lora

    for layer, (k, n, subs) in LAYERS.items():
        a, b = layer_weights(k, n, subs)
        for name, slots in batches().items():
            slots = slots.cuda()
            x = torch.randn(slots.shape[0], k, device="cuda").to(torch.bfloat16)
            y0 = torch.randn(slots.shape[0], n, device="cuda").to(torch.bfloat16)
            twin = y0.float().clone()
            reference.add_lora(twin, x.float(), a.float(), b.float(), slots)
            cuts = {"runs": runs_of(slots)}
            if name.startswith("decode"):  # a CUDA graph's layout: one run per token
                cuts["per_token"] = (torch.arange(slots.shape[0] + 1, dtype=torch.int32, device="cuda"), slots)
            for cut, (seg_starts, seg_slots) in cuts.items():
                y = y0.clone()
                add_lora(y, x, a, b, slots, seg_starts, seg_slots)
                err = rel_err(y - y0.float(), twin - y0.float())  # the delta's error, not diluted by y0
                base_same = bool(torch.equal(y[slots < 0], y0[slots < 0]))
                results.append({"kernel": "add_lora", "layer": layer, "batch": name, "segments": cut,
                                "rel_err": err, "base_rows_unchanged": base_same,
                                "ok": err < KERNEL_TOL and base_same})


def _time(fn, iters: int = 50) -> float:
    times = []
    for _ in range(5):
        fn()
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)  # microseconds


def time_kernel(results: list) -> None:
    from vdeploy_kernels.lora import add_lora

    for layer, (k, n, subs) in LAYERS.items():
        a, b = layer_weights(k, n, subs)
        w = (torch.randn(n, k, device="cuda") / k**0.5).to(torch.bfloat16)
        for tokens in (1, 32, 256, 2048):
            gen = torch.Generator().manual_seed(tokens)
            if tokens <= 256:  # decode: one run per token, as a CUDA graph replays it
                slots = torch.randint(0, MAX_LORAS, (tokens,), generator=gen, dtype=torch.int32).cuda()
                seg = (torch.arange(tokens + 1, dtype=torch.int32, device="cuda"), slots)
            else:  # prefill: 4 requests of 512 tokens, 4 adapters
                slots = torch.tensor(sum(([s] * 512 for s in range(4)), []), dtype=torch.int32, device="cuda")
                seg = runs_of(slots)
            x = torch.randn(tokens, k, device="cuda").to(torch.bfloat16)
            y = torch.zeros(tokens, n, device="cuda", dtype=torch.bfloat16)
            max_run = int((seg[0][1:] - seg[0][:-1]).max())  # as the engine passes it (no device sync per call)
            lora_us = _time(lambda: add_lora(y, x, a, b, slots, *seg, max_run))
            gemm_us = _time(lambda: torch.matmul(x, w.t()))
            row = {"timing": "add_lora", "layer": layer, "tokens": tokens, "lora_us": round(lora_us, 2),
                   "base_gemm_us": round(gemm_us, 2), "lora_over_gemm": round(lora_us / gemm_us, 3)}
            results.append(row)
            print(json.dumps(row), flush=True)


def check_end_to_end(results: list) -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        results.append({"section": "end_to_end", "skipped": "peft is not installed", "ok": True})
        return
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.lora.request import LoRARequest
    from vdeploy.testing.lora_fixtures import hf_greedy, write_peft_adapter, write_tiny_llama

    prompts = [[(37 * i + 11 * j) % 150 + 3 for j in range(n)] for i, n in enumerate([13, 6, 21, 40])]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = write_tiny_llama(root / "model")
        refs = {None: base,
                "sql": write_peft_adapter(base, root / "sql", r=4, lora_alpha=8, seed=1, use_rslora=True,
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
                "chat": write_peft_adapter(base, root / "chat", r=8, lora_alpha=16, seed=2,
                                           target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"])}
        jobs = [(name, i) for i in range(len(prompts)) for name in (None, "sql", "chat")]
        expected = {job: hf_greedy(refs[job[0]], prompts[job[1]], 12)[0] for job in set(jobs)}
        requests = [LoRARequest(name, k, str(root / name)) if name else None
                    for k, (name, _) in enumerate(jobs)]
        params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
        for eager in (False, True):
            with LLM(str(root / "model"), dtype="float32", enable_lora=True, max_loras=2, max_lora_rank=8,
                     enforce_eager=eager, block_size=16) as llm:
                outs = llm.generate([prompts[i] for _, i in jobs], params, lora_request=requests)
            wrong = [f"{name}/{i}" for (name, i), o in zip(jobs, outs) if o.outputs[0].token_ids != expected[(name, i)]]
            results.append({"section": "end_to_end", "cuda_graphs": not eager, "requests": len(jobs),
                            "mismatched": wrong, "ok": not wrong})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON results file (default: print only)")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    from vdeploy.bench.check_report import finish_report, run_sections

    torch.manual_seed(0)
    results: list = []
    sections = [("kernel", check_kernel), ("end_to_end", check_end_to_end)]
    if not args.skip_timing:
        sections.append(("timing", time_kernel))
    run_sections(sections, results)
    finish_report(results, args.out)


if __name__ == "__main__":
    main()
