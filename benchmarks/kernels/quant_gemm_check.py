"""Quantized GEMM kernels on the GPU: each against its torch twin and timed against a bf16 matmul of the same shape,
at the linear shapes of R1-Distill-Qwen-7B and -32B (fused qkv, o, fused gate_up, down) and M = 1, 16, 256, 4096.

    PYTHONPATH=/tmp/shim:$PWD python benchmarks/kernels/quant_gemm_check.py --out $OUT/quant [--sweep]
    python benchmarks/kernels/quant_gemm_check.py --device cpu --tiny --out /tmp/quant   # smoke test (interpreter)

W4A16 decode only, old default vs new default vs bf16 (< 90 s on one H100, compiles included; ~60 s expected;
w4a16_decode_timing.py; also `bash benchmarks/run_device.sh quant-w4a16`):

    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && \
    PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 python benchmarks/kernels/quant_gemm_check.py --w4a16-only \
        --m 1 4 16 --out $OUT

Prediction for that run (not measured: written from SASS instruction counts of the sm_90 build, ~4 instructions per
weight at M = 1 where the old kernel spent ~9 including two slow-pipe conversions and reached ~1 TB/s): M = 1 at
2-2.6 TB/s of weight bytes on the large layers — 7B gate_up (N 37888 x K 3584, 72 MB): ~30-35 us new vs ~65 us old
vs ~100 us bf16 (~3x); 32B gate_up (55296 x 5120, 149 MB): ~60-70 us vs ~200 us bf16; 7B down (3584 x 18944):
~16-20 us vs ~60 us bf16; the small ones (7B o, 3584 x 3584, 6.8 MB) ~5-7 us vs ~17 us bf16, latency-bound. M = 4
and 16 (tensor cores, ~5 instructions per weight): ~1.5-2 TB/s, 7B gate_up ~40-50 us vs ~105 us bf16.

Kernels (vdeploy_kernels): w4a16 (AWQ/GPTQ layout after load, group 128, uniform groups), w4a16_actorder (GPTQ
act-order split over ranks: per-row g_idx gather; down_proj only), w8a8_int8 and w8a8_fp8 (compressed-tensors,
per-channel weight scales, dynamic per-token activations; fp8 needs sm89+). For each: relative error against the
twin (‖out − twin‖ / ‖twin‖, bound REL_TOL), the kernel's median time, the bf16 x @ Wᵀ time (cuBLAS), their ratio,
and for M = 1 the weight bytes streamed per second. --sweep also times a grid of tile configs per shape (each
checked against the twin) and reports the default's time beside the best config: the data for tuning the
heuristics. Writes quant_gemm_check.json under --out; exit code 1 when a check fails. The issue's target: W4A16
at M = 1 at least 2.5x faster than bf16 (the bytes allow ~3.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REL_TOL = {"w4a16": 1e-2, "w4a16_actorder": 1e-2, "w8a8_int8": 1e-2, "w8a8_fp8": 3e-2}
GROUP = 128


def linear_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int) -> dict:
    """(N, K) of each linear as vdeploy runs it (q/k/v and gate/up fused)."""
    return {"qkv": ((heads + 2 * kv_heads) * head_dim, hidden), "o": (hidden, heads * head_dim),
            "gate_up": (2 * intermediate, hidden), "down": (hidden, intermediate)}


MODELS = {
    "r1-distill-qwen-7b": linear_shapes(3584, 18944, 28, 4, 128),
    "r1-distill-qwen-32b": linear_shapes(5120, 27648, 40, 8, 128),
}
TINY_MODELS = {"tiny": {"qkv": (96, 128), "down": (64, 256)}}


def time_ms(fn, device: str) -> float:
    """Median milliseconds (CUDA: triton's do_bench). CPU (the interpreter, a smoke test: the number only shows the
    plumbing works): one wall-clock run."""
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def rel_err(out, ref) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30)).item()


def make_w4(n: int, k: int, device: str, actorder: bool, gen):
    import torch

    from vdeploy_kernels.reference_quant import pack_int4_rows

    q = torch.randint(0, 16, (k, n), generator=gen, device=device)
    groups = k // GROUP
    scales = (torch.rand(groups, n, generator=gen, device=device) * 0.002 + 1e-4).half()
    zeros = torch.randint(0, 16, (groups, n), generator=gen, device=device).half()
    g_idx = torch.arange(k, device=device) // GROUP
    if actorder:  # a rank's rows after sorting: groups of unequal sizes, read through g_idx
        g_idx = torch.sort(g_idx[torch.randperm(k, generator=gen, device=device)][: k])[0]
    return pack_int4_rows(q), scales, zeros, g_idx.to(torch.int32)


def make_w8(n: int, k: int, device: str, fp8: bool, gen):
    import torch

    if fp8:
        w = (torch.randn(n, k, generator=gen, device=device) * 64).clamp(-448, 448).to(torch.float8_e4m3fn)
    else:
        w = torch.randint(-127, 128, (n, k), generator=gen, device=device, dtype=torch.int8)
    return w, torch.rand(n, generator=gen, device=device) * 1e-3 + 1e-5


def make_x(kernel: str, m: int, k: int, device: str, dtype, gen):
    import torch

    if kernel == "w8a8_fp8" and device == "cpu":
        # the interpreter converts fp32 -> e4m3 with its own rounding: activations whose quantized values are exact
        # (e4m3 values, each row's amax 448, times a power of two), as in tests/kernels/test_kernel_w8a8.py
        q = (torch.randn(m, k, generator=gen) * 100).clamp(-440, 440).to(torch.float8_e4m3fn).float()
        q[:, 0] = 448.0
        return (q * 2.0**-6).to(dtype)
    return torch.randn(m, k, generator=gen, device=device).to(dtype)


def check_one(kernel: str, n: int, k: int, m: int, device: str, dtype, gen) -> dict:
    import torch

    from vdeploy_kernels import reference_quant as ref
    from vdeploy_kernels.w4a16_gemm import w4a16_matmul
    from vdeploy_kernels.w8a8_gemm import w8a8_matmul

    x = make_x(kernel, m, k, device, dtype, gen)
    if kernel.startswith("w4a16"):
        actorder = kernel == "w4a16_actorder"
        qweight, scales, zeros, g_idx = make_w4(n, k, device, actorder, gen)
        group = 0 if actorder else GROUP

        def run():
            return w4a16_matmul(x, qweight, scales, zeros, g_idx, group)

        twin = ref.w4a16_matmul(x, qweight, scales, zeros, g_idx)
        weight_bytes = qweight.numel() * 4 + scales.numel() * 2 + zeros.numel() * 2
    else:
        w, ws = make_w8(n, k, device, kernel == "w8a8_fp8", gen)

        def run():
            return w8a8_matmul(x, w, ws)

        twin = ref.w8a8_matmul(x, w, ws)
        weight_bytes = w.numel() + ws.numel() * 4
    out = run()
    err = rel_err(out, twin)
    dense = torch.randn(n, k, generator=gen, device=device).to(dtype)  # the bf16 weight it replaces
    ms = time_ms(run, device)
    dense_ms = time_ms(lambda: x @ dense.t(), device)
    row = {"kernel": kernel, "m": m, "n": n, "k": k, "rel_err": err, "ok": err < REL_TOL[kernel],
           "ms": ms, "bf16_ms": dense_ms, "speedup_vs_bf16": dense_ms / ms if ms > 0 else None}
    if m == 1:
        row["weight_bytes_per_s"] = weight_bytes / (ms * 1e-3) if ms > 0 else None
    return row


def _cfg(bm, bn, bk, split=1, warps=4, stages=4, dot=True, unpack3d=False) -> dict:
    return dict(block_m=bm, block_n=bn, block_k=bk, split_k=split, num_warps=warps, num_stages=stages, dot=dot,
                unpack3d=unpack3d)


def _fcfg(bm, bn, bk, warps, stages, dot=False, split=0) -> dict:
    """A config of the factored decode kernel (vdeploy_kernels.w4a16_factored); split 0: factored_split's choice."""
    return dict(factored=True, dot=dot, block_m=bm, block_n=bn, block_k=bk, split_k=split, num_warps=warps,
                num_stages=stages)


def factored_candidates(m: int) -> list[dict]:
    """CUDA-core FMA tiles (1-4 rows; one warp holds 8 columns at BN 256, 4 at BN 128 or 512 over 4 warps) and
    tensor-core tiles (BN = the wgmma's rows), each at factored_split's K split; the FMA default's tile also at fixed
    splits."""
    out = []
    if m <= 4:
        bm = 1 if m == 1 else 2 if m == 2 else 4
        tiles = ((256, 1, 64), (256, 1, 32), (128, 1, 64), (128, 1, 32), (512, 2, 32), (512, 2, 64), (512, 4, 64),
                 (1024, 4, 32))  # (BN, warps, BK)
        out += [_fcfg(bm, bn, bk, w, st) for bn, w, bk in tiles for st in (2, 3)]
        out += [_fcfg(bm, 256, 64 if m == 1 else 32, 1, 3, split=s) for s in (4, 8, 16, 32)]
    out += [_fcfg(16, bn, bk, w, st, dot=True) for bn, w in ((64, 4), (128, 4), (128, 8), (256, 8))
            for bk in (64, 128) for st in (3, 4)]
    return out


def sweep_candidates(kernel: str, m: int, tiny: bool) -> list[dict]:
    """The configs --sweep times (kernel tiles are chosen by a heuristic; this is the data to tune it): for W4A16
    decode the dequantizing kernel's grid (configs without `factored`) and the factored kernel's."""
    if tiny:
        return [_cfg(16, 32, 64, 2, stages=1)] + ([_cfg(1, 32, 64, 2, stages=1, dot=False, unpack3d=True),
                                                   _fcfg(1, 32, 32, 1, 1, split=2),
                                                   _fcfg(16, 32, 32, 4, 1, dot=True, split=2)]
                                                  if kernel == "w4a16" and m == 1 else [])
    if kernel == "w4a16":
        if m <= 16:
            out = [_cfg(16, bn, 128, s, unpack3d=u) for bn in (32, 64, 128) for s in (1, 4, 8, 16)
                   for u in (False, True)]
            if m <= 4:
                out += [_cfg(m if m in (1, 2, 4) else 4, bn, 128, s, dot=False, unpack3d=u) for bn in (64, 128, 256)
                        for s in (1, 4, 8) for u in (False, True)]
            return out + factored_candidates(m)
        return [_cfg(bm, bn, 64, 1, w, 3, unpack3d=u) for bm in (64, 128) for bn in (128, 256) for w in (4, 8)
                for u in (False, True)] + ([_cfg(32, 128, 64, s) for s in (2, 4)] if m <= 256 else [])
    return [_cfg(bm, bn, 128, 1, w, st) for bm in ((16,) if m <= 16 else (64, 128)) for bn in (64, 128)
            for w in (4, 8) for st in (3, 4)]


def sweep_one(kernel: str, n: int, k: int, m: int, device: str, dtype, gen, tiny: bool) -> dict:
    """Time every candidate config at one shape; each is checked against the twin too."""
    import torch

    from vdeploy_kernels import reference_quant as ref
    from vdeploy_kernels.w4a16_gemm import factored_split, w4a16_config, w4a16_matmul
    from vdeploy_kernels.w8a8_gemm import w8a8_config, w8a8_matmul

    x = make_x(kernel, m, k, device, dtype, gen)
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else 4
    if kernel == "w4a16":
        qweight, scales, zeros, g_idx = make_w4(n, k, device, False, gen)
        twin = ref.w4a16_matmul(x, qweight, scales, zeros, g_idx)
        default = w4a16_config(m, n, k, GROUP, sms)

        def run(cfg):
            return w4a16_matmul(x, qweight, scales, zeros, g_idx, GROUP, config=cfg)
    else:
        w, ws = make_w8(n, k, device, kernel == "w8a8_fp8", gen)
        twin = ref.w8a8_matmul(x, w, ws)
        default = w8a8_config(m, n, k, torch.device(device))

        def run(cfg):
            return w8a8_matmul(x, w, ws, config=cfg)

    tried = []
    for cfg in [default] + sweep_candidates(kernel, m, tiny):
        if cfg.get("factored") and not cfg["split_k"]:
            cfg = dict(cfg, split_k=factored_split(m, n, k, cfg, sms))
        try:
            err = rel_err(run(cfg), twin)
            ms = time_ms(lambda cfg=cfg: run(cfg), device) if err < REL_TOL[kernel] else None
            tried.append({"config": cfg, "rel_err": err, "ms": ms})
        except Exception as e:  # a config that does not compile or does not fit shared memory
            tried.append({"config": cfg, "error": repr(e)[:200], "ms": None})
    timed = [t for t in tried if t["ms"] is not None]
    best = min(timed, key=lambda t: t["ms"]) if timed else None
    return {"kernel": kernel, "m": m, "n": n, "k": k, "default_config": default, "default_ms": tried[0]["ms"],
            "best_config": best["config"] if best else None, "best_ms": best["ms"] if best else None,
            "ok": best is not None and tried[0]["ms"] is not None, "tried": tried}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for quant_gemm_check.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="small shapes (CPU smoke test in the interpreter)")
    parser.add_argument("--git-rev", default=os.environ.get("VDEPLOY_GIT_REV", "unknown"))
    parser.add_argument("--sweep", action="store_true",
                        help="also time a grid of tile configs per shape (w4a16, w8a8) and report the best")
    parser.add_argument("--sweep-budget-s", type=float, default=360.0,
                        help="stop sweeping after this many seconds (the report says it was cut short)")
    parser.add_argument("--w4a16-only", action="store_true",
                        help="only W4A16 decode: old default vs new default vs bf16 as CUDA graphs, checked against "
                        "the twin (w4a16_decode_timing.py; writes w4a16_decode.json)")
    parser.add_argument("--w4a16-factored-sweep", action="store_true",
                        help="only W4A16 decode tiles: the factored kernel's tiles x K splits (and for M > 2 the "
                        "dequantizing kernel's) against the engine's config, as CUDA graphs, at each --sweep-m "
                        "(w4a16_decode_timing.sweep_factored; writes w4a16_factored_sweep.json)")
    parser.add_argument("--sweep-m", type=int, nargs="+", default=[1], help="--w4a16-factored-sweep: the M values")
    parser.add_argument("--m", type=int, nargs="+", default=[1, 4, 16], help="--w4a16-only: the M values")
    parser.add_argument("--models", nargs="+", default=None, help="--w4a16-only / --w4a16-factored-sweep: a subset of the models")
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="--w4a16-only: stop starting new layers after this many seconds")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel import
    import torch

    # the interpreter's bf16 tl.dot is wrong (tests/kernels/test_kernel_w4a16.py), so CPU runs fp16 activations
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float16
    models = TINY_MODELS if args.tiny else MODELS
    chosen = {name: shapes for name, shapes in models.items() if not args.models or name in args.models}
    if args.w4a16_factored_sweep:
        from w4a16_decode_timing import sweep_factored

        report = sweep_factored(chosen, args.device, dtype, args.out, args.git_rev, args.budget_s,
                                tuple(args.sweep_m))
        return 0 if report["rows"] else 1
    if args.w4a16_only:
        from w4a16_decode_timing import run

        return 0 if run(chosen, args.m, args.device, dtype, args.out, args.git_rev, args.budget_s)["ok"] else 1
    ms_list = (1, 33) if args.tiny else (1, 16, 256, 4096)
    kernels = ["w4a16", "w4a16_actorder", "w8a8_int8"]
    if args.device == "cpu" or torch.cuda.get_device_capability() >= (8, 9):
        kernels.append("w8a8_fp8")
    gen = torch.Generator(device=args.device).manual_seed(0)
    results = []
    for model, shapes in models.items():
        for layer, (n, k) in shapes.items():
            for kernel in kernels:
                if kernel == "w4a16_actorder" and layer != "down":
                    continue
                for m in ms_list:
                    try:
                        row = check_one(kernel, n, k, m, args.device, dtype, gen)
                    except Exception as e:  # one failing shape must not hide the others
                        row = {"kernel": kernel, "m": m, "n": n, "k": k, "ok": False, "error": repr(e)[:500]}
                    row.update(model=model, layer=layer)
                    results.append(row)
                    speed = row.get("speedup_vs_bf16")
                    print(f"{model:20s} {layer:8s} {kernel:15s} M={m:5d} err={row.get('rel_err', float('nan')):.2e} "
                          f"{row.get('ms', float('nan')):8.4f} ms  bf16 {row.get('bf16_ms', float('nan')):8.4f} ms  "
                          f"x{speed if speed else float('nan'):.2f}  {'ok' if row['ok'] else 'FAIL'}", flush=True)
    sweeps = []
    sweep_cut = False
    deadline = time.monotonic() + args.sweep_budget_s
    # most wanted first, in case the budget cuts the sweep: decode (the W4A16 target), then prefill
    sweep_ms = [m for m in (1, 4096, 16, 256, 33) if m in ms_list]
    shapes_todo = [(model, layer, n, k) for model, shapes in models.items() for layer, (n, k) in shapes.items()
                   if not (args.tiny and layer != "qkv")]  # the smoke test: one shape is enough
    if args.sweep:
        for m in sweep_ms:
            for model, layer, n, k in shapes_todo:
                for kernel in [kk for kk in kernels if kk in ("w4a16", "w8a8_int8", "w8a8_fp8")]:
                    if time.monotonic() > deadline:
                        sweep_cut = True
                        break
                    row = sweep_one(kernel, n, k, m, args.device, dtype, gen, args.tiny)
                    row.update(model=model, layer=layer)
                    sweeps.append(row)
                    print(f"sweep {model:20s} {layer:8s} {kernel:10s} M={m:5d} default {row['default_ms']} ms, "
                          f"best {row['best_ms']} ms {row['best_config']}", flush=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (Triton interpreter)"
    report = {"benchmark": "quant_gemm_check", "git_revision": args.git_rev, "device": device_name,
              "dtype": str(dtype).removeprefix("torch."), "group_size": GROUP, "rel_tol": REL_TOL,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "ok": all(r["ok"] for r in results + sweeps), "results": results, "sweeps": sweeps,
              "sweep_cut_short": sweep_cut}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quant_gemm_check.json").write_text(json.dumps(report, indent=1))
    print("all ok" if report["ok"] else f"{sum(not r['ok'] for r in results + sweeps)} check(s) FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
