"""GPU check of the fused rotary + KV-cache store (kernels/rope_store_kv.py) against the two kernels it replaces
(rotary.py then store_kv.py), at Llama-3.1-8B's attention shape: 32 query / 8 KV heads, D = 128, bf16, page 16,
Llama-3.1 rope (llama3 scaling, theta 500000), T = 1 (batch-1 decode), 256 and 8192 (a long prefill chunk).

    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels
    PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 python3 benchmarks/kernels/rope_store_check.py --out $OUT/rope_store_check.json

(< 60 s on an H100 / H200, compiles included.) --tiny: small fp32 shapes on the CPU interpreter (a smoke test of the
script itself; tests/bench/test_rope_store_check_cpu.py).

1. Correctness, per T: rotated q and the rotated k (return_k) against rotary.py's (max abs diff, expected 0), and the
   cache bytes after the store against store_kv.py's (bf16 cache; and an fp8 e4m3 cache with k_scale 0.05 / v_scale
   0.02: mismatched bytes, expected 0), plus the max abs diff of q against the fp32 twin (reference.rope_store_kv:
   a bf16 rounding step at most). Padding rows (slot -1) every 97th token. Any mismatch: exit code 1.
2. Time, per T: the fused kernel without (decode's launch) and with the rotated k kept (a fresh prompt's launch)
   against rotary + store_kv: CUDA events around a CUDA graph of `reps` back-to-back calls (what a captured decode
   step pays per layer, launch gaps included), and single eager calls (median, vdeploy.bench.hardware.median_call_ms).

Prediction (written before any GPU run): at T = 1 in a graph the two launches cost ~5-6 us per layer, the fused one
~2.5-3.5 us, i.e. -2 to -3 us per layer, -60 to -90 us of a ~4.8 ms Llama-3.1-8B batch-1 decode step (32 layers) on an
H200. At T = 8192 the pass is memory bound: ~235 MB moved by the two kernels against ~200 MB (~217 MB with k kept) by
the fused one, so ~10-15 % less (~70 -> ~60 us on an H100), a few tens of us per 8192-token prefill step over 32
layers. Bytes equal in every case (fp8 included: both paths quantize through store_kv.to_cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vdeploy from this checkout when run as a script
from vdeploy.bench.hardware import median_call_ms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark helpers
from bench_device import kernel_device  # noqa: E402

LLAMA8B = {"num_heads": 32, "num_kv_heads": 8, "head_dim": 128}
TINY = {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32}
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}
FP8_SCALES = (0.05, 0.02)


def make_case(num_tokens, shape, dtype, device, max_position, gen):
    """q, k, v as views into one fused qkv projection output, positions, slots (every 97th a padding row)."""
    h, hk, d = shape["num_heads"], shape["num_kv_heads"], shape["head_dim"]
    qkv = torch.randn(num_tokens, (h + 2 * hk) * d, generator=gen, device=device).to(dtype)
    q = qkv[:, : h * d].view(-1, h, d)
    k = qkv[:, h * d : (h + hk) * d].view(-1, hk, d)
    v = qkv[:, (h + hk) * d :].view(-1, hk, d)
    positions = torch.randint(0, max_position, (num_tokens,), generator=gen, device=device)
    num_slots = 2 * max(num_tokens, 16) // 16 * 16 + 16
    slots = torch.randperm(num_slots, generator=gen, device=device)[:num_tokens]
    if num_tokens > 1:
        slots[::97] = -1
    return q, k, v, positions, slots, num_slots // 16


def graph_us(fn, reps: int, replays: int = 10) -> float:
    """Microseconds per call of `reps` back-to-back calls captured in one CUDA graph, replayed `replays` times."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # compiled already; warm the allocator on the capture's side stream
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    us = begin.elapsed_time(end) * 1e3 / (replays * reps)
    del graph
    torch.cuda.empty_cache()
    return us


def check(num_tokens, shape, dtype, device, cos_sin, gen, args, failures) -> dict:
    from vdeploy_kernels import reference
    from vdeploy_kernels.rope_store_kv import rope_store_kv
    from vdeploy_kernels.rotary import rotary
    from vdeploy_kernels.store_kv import store_kv

    q, k, v, positions, slots, num_blocks = make_case(num_tokens, shape, dtype, device, cos_sin.shape[0], gen)
    hk, d = shape["num_kv_heads"], shape["head_dim"]
    row: dict = {"tokens": num_tokens}
    for cache_dtype, scales in ((dtype, (1.0, 1.0)), (torch.float8_e4m3fn, FP8_SCALES)):
        if cache_dtype == torch.float8_e4m3fn and device.type != "cuda":
            continue  # the interpreter's fp32 -> fp8 cast is wrong (the same in both paths, but say nothing here)
        label = str(cache_dtype).removeprefix("torch.")
        fused_cache = torch.zeros(2, num_blocks, 16, hk, d, dtype=cache_dtype, device=device)
        two_cache = fused_cache.clone()
        q_f, k_f = rope_store_kv(q, k, v, positions, cos_sin, fused_cache, slots, *scales, return_k=True)
        q_r, k_r = rotary(q, k, positions, cos_sin)
        store_kv(k_r, v, two_cache, slots, *scales)
        if device.type == "cuda":
            torch.cuda.synchronize()
        q_twin, _ = reference.rope_store_kv(q, k, v, positions, cos_sin, two_cache.clone(), slots, *scales)
        result = {
            "q_max_abs_diff": (q_f.float() - q_r.float()).abs().max().item(),
            "k_max_abs_diff": (k_f.float() - k_r.float()).abs().max().item(),
            "cache_mismatched_bytes": int((fused_cache.view(torch.uint8) != two_cache.view(torch.uint8)).sum()),
            "q_max_abs_diff_vs_fp32_twin": (q_f.float() - q_twin.float()).abs().max().item(),
        }
        result["ok"] = result["q_max_abs_diff"] == 0 and result["k_max_abs_diff"] == 0 \
            and result["cache_mismatched_bytes"] == 0
        if not result["ok"]:
            failures.append(f"T={num_tokens} {label} cache: {result}")
        row[f"check_{label}_cache"] = result
        print(f"  T={num_tokens:5d} {label:14s} cache: q diff {result['q_max_abs_diff']:.1e}, k diff "
              f"{result['k_max_abs_diff']:.1e}, {result['cache_mismatched_bytes']} cache bytes differ, "
              f"q vs fp32 twin {result['q_max_abs_diff_vs_fp32_twin']:.1e}{'' if result['ok'] else '  <-- MISMATCH'}",
              flush=True)

    cache = torch.zeros(2, num_blocks, 16, hk, d, dtype=dtype, device=device)
    paths = {
        "separate": lambda: store_kv(rotary(q, k, positions, cos_sin)[1], v, cache, slots),
        "fused": lambda: rope_store_kv(q, k, v, positions, cos_sin, cache, slots),
        "fused_keep_k": lambda: rope_store_kv(q, k, v, positions, cos_sin, cache, slots, return_k=True),
    }
    timing = {}
    for name, fn in paths.items():
        t = {"eager_us": median_call_ms(fn, device, args.reps) * 1e3}
        if device.type == "cuda":
            t["graph_us"] = graph_us(fn, reps=32 if num_tokens <= 256 else 4)
        timing[name] = t
    base = timing["separate"]
    for name in ("fused", "fused_keep_k"):
        for key in list(timing[name]):
            timing[name][f"saved_{key}"] = base[key] - timing[name][key]
    row["timing"] = timing
    print("  T=%5d time (us) " % num_tokens + "  ".join(
        f"{n}: " + "/".join(f"{timing[n][key]:.2f}" for key in ("graph_us", "eager_us") if key in timing[n])
        for n in paths) + "  (graph/eager)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="JSON report path")
    parser.add_argument("--reps", type=int, default=50, help="single eager calls timed per path (median)")
    parser.add_argument("--tokens", type=int, nargs="*", default=None, help="token counts (1 256 8192)")
    parser.add_argument("--tiny", action="store_true", help="tiny fp32 shapes on the CPU interpreter")
    args = parser.parse_args()
    device = kernel_device(args.tiny)  # before any kernel module is imported
    import triton

    from vdeploy.layers.rotary import compute_cos_sin_cache

    shape = TINY if args.tiny else LLAMA8B
    dtype = torch.float32 if args.tiny else torch.bfloat16
    tokens = args.tokens or ([1, 5, 40] if args.tiny else [1, 256, 8192])
    max_position = 512 if args.tiny else 131072
    cos_sin = compute_cos_sin_cache(shape["head_dim"], max_position, 500000.0, LLAMA31_ROPE, device)
    gen = torch.Generator(device=device).manual_seed(0)
    t0 = time.time()
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "triton": triton.__version__, "torch": torch.__version__, "shape": shape,
              "dtype": str(dtype), "page_size": 16, "fp8_scales": FP8_SCALES, "cases": []}
    failures: list[str] = []
    for t in tokens:
        report["cases"].append(check(t, shape, dtype, device, cos_sin, gen, args, failures))
    report.update(ok=not failures, failures=failures, seconds=time.time() - t0)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"report: {args.out}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), flush=True)
        return 1
    print(f"all ok ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
