"""The dense decode GEMV (vdeploy_kernels.dense_gemv) against cuBLAS at the bf16 decode shapes we benchmark: each
tile of a grid and its K splits, per layer and row count, checked against cuBLAS's output and timed beside it.

    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && \
    PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 python benchmarks/kernels/dense_gemv_check.py --out $OUT --install
    python benchmarks/kernels/dense_gemv_check.py --device cpu --tiny --out /tmp/gemv   # smoke test (interpreter)

Shapes: Llama-3.1-8B (decode_8b's model) and R1-Distill-Qwen-7B (the Qwen2-7B shape), fused qkv / o / fused gate_up
/ down, M = 1, 2, 4. Each candidate and cuBLAS (F.linear) run as a CUDA graph of back-to-back calls over weight
copies cycled past the L2 (w4a16_decode_timing.graph_us: every call streams its weight from HBM, as in a decode
step). Writes dense_gemv_check.json, and tables/dense_gemv/<shape>.json: the shipped table with a row replaced or
added for each M whose best tile beats cuBLAS by WIN (copy them into kernels/configs/dense_gemv/ to ship; --install
also puts them under $VDEPLOY_HOME/kernel_configs/ so this machine's later runs use them). No row: cuBLAS keeps the
shape.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quant_gemm_check import linear_shapes  # noqa: E402
from w4a16_decode_timing import MIN_CALLS, _timing_setup, weight_copies  # noqa: E402

MODELS = {
    "llama-3.1-8b": linear_shapes(4096, 14336, 32, 8, 128),
    "r1-distill-qwen-7b": linear_shapes(3584, 18944, 28, 4, 128),
}
TINY_MODELS = {"tiny": {"o": (96, 128), "down": (64, 320)}}
WIN = 1.05  # a row is tabulated where the best tile is this much faster than cuBLAS
REL_TOL = 1e-2  # against cuBLAS's bf16 output (both accumulate in fp32; the orders differ)
WARPS_PER_SM = (8, 16, 32)  # the K splits tried: enough programs for this many warps per SM


def tiles(m: int, tiny: bool) -> list[tuple[int, int, int, int]]:
    """(BLOCK_N, BLOCK_K, warps, stages) with 8-64 products per thread per tile held in fp32 registers."""
    if tiny:
        return [(16, 64, 4, 1), (32, 32, 2, 1)]
    block_m = 1 << (m - 1).bit_length()
    out = []
    # 1-2 rows a program: the 2026-12-07 H100 sweep's winners all sat at its narrowest tile then, 4
    for warps, bn, bk in itertools.product((2, 4, 8), (1, 2, 4, 8, 16, 32), (256, 512, 1024)):
        per_thread = block_m * bn * bk // (32 * warps)
        if 16 <= per_thread <= 64:
            out += [(bn, bk, warps, stages) for stages in (2, 4)]
    return out


def splits(n: int, k: int, bn: int, bk: int, warps: int, sms: int) -> list[int]:
    tiles_n = -(-n // bn)
    k_blocks = -(-k // bk)
    return sorted({max(1, min(-(-(w * sms // warps) // tiles_n), k_blocks)) for w in WARPS_PER_SM})


def time_layer(dense_gemv, timer, gen, args, cuda: bool, sms: int, deadline: float, n: int, k: int, m: int) -> dict:
    """cuBLAS and every candidate tile at one (N, K, M): the timings, the best, whether all outputs matched."""
    import torch

    dtype = torch.bfloat16
    weights = [torch.randn(n, k, generator=gen, device=args.device).to(dtype)]
    weights += [weights[0].clone() for _ in range(weight_copies(n * k * 2, cuda) - 1)]
    x = torch.randn(m, k, generator=gen, device=args.device).to(dtype)
    count = max(MIN_CALLS, len(weights)) if cuda else 1
    cublas = (x @ weights[0].t()).float()
    cublas_us = timer([lambda w=weights[i % len(weights)]: x @ w.t() for i in range(count)])
    tried, ok, cut = [], True, False
    for bn, bk, warps, stages in tiles(m, args.tiny):
        for split in splits(n, k, bn, bk, warps, sms):
            if time.monotonic() > deadline:
                cut = True
                break
            cfg = dict(block_m=1 << (m - 1).bit_length(), block_n=bn, block_k=bk, split_k=split, num_warps=warps,
                       num_stages=stages)
            try:
                err = ((dense_gemv(x, weights[0], cfg).float() - cublas).norm() / cublas.norm()).item()
                us = timer([lambda w=weights[i % len(weights)]: dense_gemv(x, w, cfg)
                            for i in range(count)]) if err < REL_TOL else None
            except Exception as e:  # noqa: BLE001 - a tile that does not compile or fit is no candidate
                tried.append({"config": cfg, "error": repr(e)[:200], "us": None})
                continue
            ok &= err < REL_TOL
            tried.append({"config": cfg, "rel_err": err, "us": us})
    timed = [t for t in tried if t["us"]]
    best = min(timed, key=lambda t: t["us"]) if timed else None
    nbytes = n * k * 2
    return {"n": n, "k": k, "m": m, "cublas_us": cublas_us, "cublas_TBps": nbytes / cublas_us * 1e-6, "best": best,
            "speedup": cublas_us / best["us"] if best else None,
            "best_TBps": nbytes / best["us"] * 1e-6 if best else None, "weight_copies": len(weights),
            "tried": tried, "ok": ok, "cut": cut}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the interpreter's smoke test)")
    parser.add_argument("--models", nargs="+", default=None, help="a subset of the models")
    parser.add_argument("--m", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--budget-s", type=float, default=150.0, help="stop after this many seconds (reported)")
    parser.add_argument("--install", action="store_true", help="copy the tables to $VDEPLOY_HOME/kernel_configs")
    parser.add_argument("--git-rev", default=os.environ.get("VDEPLOY_GIT_REV", "unknown"))
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)

    import torch

    from vdeploy_kernels.dense_gemv import dense_gemv
    from vdeploy_kernels.dense_gemv_configs import KIND, config_name
    from vdeploy_kernels.tuned_tables import tuned_dirs, write_merged_table

    cuda, sms, timer, gen = _timing_setup(args.device)
    models = TINY_MODELS if args.tiny else {k: v for k, v in MODELS.items() if not args.models or k in args.models}
    deadline = time.monotonic() + args.budget_s
    gpu = torch.cuda.get_device_name() if cuda else "CPU (Triton interpreter)"
    out_dir = Path(args.out)
    rows, cut, ok = [], False, True
    tables: dict[tuple[int, int], dict] = {}
    for m in args.m:  # every layer at M = 1 first: the budget cuts the larger batches, not a layer
        for model, shapes in models.items():
            for layer, (n, k) in shapes.items():
                if time.monotonic() > deadline:
                    cut = True
                    break
                row = time_layer(dense_gemv, timer, gen, args, cuda, sms, deadline, n, k, m)
                ok &= row.pop("ok")
                cut |= row.pop("cut")
                rows.append(dict(model=model, layer=layer, **row))
                best = row["best"]
                if best and cuda and row["speedup"] >= WIN:
                    tables.setdefault((n, k), {})[str(m)] = best["config"]
                print(f"{model:20s} {layer:8s} M={m}  cublas {row['cublas_us']:7.1f} us ({row['cublas_TBps']:.2f} TB/s)"
                      + (f"  best {best['us']:7.1f} us x{row['speedup']:.2f} {json.dumps(best['config'])}" if best
                         else "  no tile ran"), flush=True)
    for (n, k), new_rows in tables.items():
        path = write_merged_table(KIND, config_name(n, k, "bfloat16", gpu), new_rows, out_dir / "tables")
        if args.install:
            tuned_dirs(KIND)[0].mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tuned_dirs(KIND)[0] / path.name)
    report = {"benchmark": "dense_gemv_check", "git_revision": args.git_rev, "device": gpu, "dtype": "bfloat16",
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timing": "cuda graph" if cuda else "wall",
              "win": WIN, "ok": ok and bool(rows), "cut_short": cut, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dense_gemv_check.json").write_text(json.dumps(report, indent=1))
    print("all ok" if report["ok"] else "check(s) FAILED or nothing ran")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
