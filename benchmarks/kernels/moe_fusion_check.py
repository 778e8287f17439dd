"""The fused MoE epilogue (issue 15) against the separate passes it replaced: check, then time, one MoE layer.

Cases: DeepSeek-V2-Lite's routed experts (E=64, I=1408, H=2048, top-6, bf16) at T = 1, 64, 512 rows and R1's
(E=256, I=2048, H=7168, top-8, block FP8 128x128, TP 1) at T = 1, 256. For each, one MoE layer with the shared
experts' output added:
  old  fused_moe(..., fuse_epilogue=False) + shared: GEMM1, silu_and_mul (FP8: + per_token_group_quant_fp8),
       GEMM2, torch's y.view(T, k, H).sum(1), then `+ shared` — what the engine ran before;
  new  fused_moe(..., shared_output=shared): one silu+quant kernel (FP8), then moe_epilogue.moe_sum (top-k sum +
       shared add in one pass).
Check: max |new - old| and the fraction of elements that differ (expected: 0, or a rare bf16 step where torch's
reduction adds the k rows in another fp32 order). Timing: each variant captured once in a CUDA graph and replayed
(as the engine's decode runs it), median of --reps replays under CUDA events (vdeploy.bench.hardware.median_call_ms).
Weights: random, generated on the device (R1: e4m3 bytes with unit-ish scales; 11 GB for the one layer).

    mkdir -p /tmp/shim && ln -sfn "$PWD/kernels" /tmp/shim/vdeploy_kernels
    PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 python benchmarks/kernels/moe_fusion_check.py --out $OUT/moe_fusion.json
    python benchmarks/kernels/moe_fusion_check.py --tiny --out /tmp/moe_fusion.json   # CPU smoke test (interpreter)

Prediction (written before the first GPU run, when bf16 also computed silu(gate) * up in GEMM2's A loads): V2-Lite
T=512 ~0.4-0.5 ms per decode step over 26 layers, T=1 and 64 ~0.1-0.15 ms, R1 ~1 % of a layer. Measured on an H100
(benchmarks/results/2026-12-06e-h100/): the silu in GEMM2's loads made V2-Lite's layer 10-34 % slower (0.66x at T=1,
0.87x at 512), so it was removed; without it V2-Lite gains 1-4 % a layer (2.5-6.8 us), R1 0.4-4 % (6.7-16 us).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vdeploy from this checkout when run as a script
from vdeploy.bench.hardware import median_call_ms  # noqa: E402

# experts, intermediate, hidden, top-k, block FP8, MoE layers of the model (for the per-step projection)
SHAPES = {
    "v2-lite": dict(e=64, i=1408, h=2048, k=6, fp8=False, layers=26),
    "r1": dict(e=256, i=2048, h=7168, k=8, fp8=True, layers=58),
    "tiny": dict(e=8, i=48, h=64, k=2, fp8=False, layers=2),  # the CPU smoke test
    "tiny-fp8": dict(e=4, i=128, h=256, k=2, fp8=True, layers=2),
}
CASES = [("v2-lite", 1), ("v2-lite", 64), ("v2-lite", 512), ("r1", 1), ("r1", 256)]
TINY_CASES = [("tiny", 1), ("tiny", 9), ("tiny-fp8", 3)]


def make_layer(shape: dict, device: str, dtype: torch.dtype):
    """Random expert weights, one expert at a time (no fp32 copy of a whole R1 layer). FP8: e4m3 values spread over
    the format's range, scales such that weights are ~0.02."""
    e, i, h = shape["e"], shape["i"], shape["h"]
    if not shape["fp8"]:
        w13 = torch.empty(e, 2 * i, h, device=device, dtype=dtype)  # [E, 2I, H]
        w2 = torch.empty(e, h, i, device=device, dtype=dtype)  # [E, H, I]
        for w in (w13, w2):
            for ex in range(e):
                w[ex].normal_(0.0, 0.02)
        return w13, w2, None, None
    fp8 = torch.float8_e4m3fn
    w13 = torch.empty(e, 2 * i, h, device=device, dtype=fp8)
    w2 = torch.empty(e, h, i, device=device, dtype=fp8)
    for w in (w13, w2):
        for ex in range(e):
            w[ex] = (torch.randn(w.shape[1:], device=device) * 64).clamp(-448, 448).to(fp8)
    s13 = torch.full((e, 2 * i // 128, h // 128), 0.02 / 64, device=device)  # [E, 2I/128, H/128]
    s2 = torch.full((e, h // 128, i // 128), 0.02 / 64, device=device)  # [E, H/128, I/128]
    return w13, w2, s13, s2


def run_case(name: str, t: int, layer, device: str, dtype: torch.dtype, reps: int) -> dict:
    from vdeploy_kernels.fused_moe import fused_moe

    shape = SHAPES[name]
    w13, w2, s13, s2 = layer
    gen = torch.Generator(device=device).manual_seed(t)
    x = torch.randn(t, shape["h"], device=device, generator=gen).to(dtype)  # [T, H]
    ids = torch.rand(t, shape["e"], device=device, generator=gen).topk(shape["k"], dim=-1).indices  # [T, k]
    topk_weights = torch.rand(t, shape["k"], device=device, generator=gen)  # [T, k]
    shared = (torch.randn(t, shape["h"], device=device, generator=gen) * 0.1).to(dtype)  # [T, H]

    def old():
        return fused_moe(x, w13, w2, ids, topk_weights, s13, s2, shared_output=shared, fuse_epilogue=False)

    def new():
        return fused_moe(x, w13, w2, ids, topk_weights, s13, s2, shared_output=shared)

    out_old, out_new = old(), new()  # also compiles every kernel before any capture
    diff = (out_new.float() - out_old.float()).abs()
    row = {"shape": name, "tokens": t, "max_abs_diff": diff.max().item(),
           "rel_diff": (diff.norm() / out_old.float().norm().clamp_min(1e-30)).item(),
           "mismatch_fraction": (out_new != out_old).float().mean().item()}
    if device == "cuda":  # the same kernels' math: identical but for torch's summation order (rare bf16 steps)
        row["ok"] = row["mismatch_fraction"] < 1e-3 and row["rel_diff"] < 1e-3
    else:  # the CPU's old path takes torch's silu (fp32 ulps from the kernel's exp): close, not identical
        row["ok"] = row["rel_diff"] < 1e-5
    timed = {}
    for label, fn in (("old", old), ("new", new)):
        if device == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            timed[label] = median_call_ms(graph.replay, torch.device(device), reps)
        else:
            timed[label] = median_call_ms(fn, torch.device(device), 1, warmup_s=0.0)
    row.update(old_ms=timed["old"], new_ms=timed["new"], speedup=timed["old"] / timed["new"],
               saved_us_per_layer=(timed["old"] - timed["new"]) * 1e3,
               saved_ms_per_step=(timed["old"] - timed["new"]) * shape["layers"], moe_layers=shape["layers"])
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="the JSON report")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="small fp32 shapes in the CPU interpreter")
    args = parser.parse_args()
    if args.tiny:
        os.environ["TRITON_INTERPRET"] = "1"
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # the interpreter's bf16 tl.dot is wrong
    started = time.perf_counter()
    report = {"gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter)", "rows": []}
    cases = TINY_CASES if args.tiny else CASES
    if device == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        cases = [c for c in cases if not SHAPES[c[0]]["fp8"]]  # no FP8 tensor cores
    print(f"{'shape':8} {'T':>5} {'old ms':>8} {'new ms':>8} {'x':>6} {'us/layer':>9} {'ms/step':>8} "
          f"{'max|diff|':>10} {'differ':>8}", flush=True)
    for name in dict.fromkeys(c[0] for c in cases):
        layer = make_layer(SHAPES[name], device, dtype)
        for _, t in (c for c in cases if c[0] == name):
            row = run_case(name, t, layer, device, dtype, args.reps)
            report["rows"].append(row)
            print(f"{name:8} {t:5d} {row['old_ms']:8.4f} {row['new_ms']:8.4f} {row['speedup']:6.3f} "
                  f"{row['saved_us_per_layer']:9.2f} {row['saved_ms_per_step']:8.3f} {row['max_abs_diff']:10.2e} "
                  f"{row['mismatch_fraction']:8.1e}{'' if row['ok'] else '  CHECK FAILED'}", flush=True)
        del layer
        if device == "cuda":
            torch.cuda.empty_cache()
    report["total_s"] = time.perf_counter() - started
    report["ok"] = all(r["ok"] for r in report["rows"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'all checks passed' if report['ok'] else 'A CHECK FAILED'}; {report['total_s']:.1f} s -> {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TRITON_INTERPRET", "0")
    sys.exit(main())
