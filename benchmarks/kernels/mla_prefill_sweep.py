"""Check, time and tune the expanded-MLA prefill kernel (kernels/mla_prefill_attention.py) at DeepSeek's head dims
(keys 128 + 64 rope, values 128, bf16); write the tuned table prefill_attention_configs.py reads and a JSON report.

Cases: R1 (128 heads at TP 1) 4 prompts x 2,048 fresh tokens, the prefill step of deepseek_kernel_profile.py (the
kernel this one replaced took 41.8 ms for 8 layers there on an H100, 5.2 ms a layer, ~131 TFLOP/s); the same with
a 2,048-token cached prefix (extend); V2-Lite (16 heads) 4 x 2,048 with the winning config. Every config is compared
with the fp32 torch twin first (a wrong config fails the run and cannot win), then timed: CUDA events, median of
--reps calls. Causal FLOPs = 2 * H * (Dn + R + Dv) * visible (query, key) pairs.

    PYTHONPATH=/tmp/shim:$PWD python3 benchmarks/kernels/mla_prefill_sweep.py --out $OUT/mla_prefill_sweep.json

The table goes to $VDEPLOY_HOME/kernel_configs/prefill_attention/mla-D192-G1-bfloat16-<GPU>.json (copy it to
kernels/configs/prefill_attention/ to ship it). --tiny: a small fp32 case in the CPU interpreter (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vdeploy from this checkout when run as a script
from vdeploy.bench.hardware import median_call_ms  # noqa: E402

NOPE, ROPE, VDIM = 128, 64, 128
# (block_m, block_n, num_warps, num_stages, tma); the first is the heuristic default for long prompts
CONFIGS = [(128, 64, 8, 3, False), (128, 64, 8, 2, False), (128, 32, 8, 3, False), (64, 64, 4, 3, False),
           (64, 128, 4, 3, False), (64, 64, 8, 3, False), (128, 128, 8, 2, False), (64, 128, 8, 3, False),
           (128, 64, 8, 3, True), (128, 64, 8, 2, True), (64, 64, 4, 3, True), (64, 128, 4, 3, True),
           (128, 128, 8, 2, True), (64, 128, 8, 3, True)]
TINY_CONFIGS = [(16, 16, 4, 1, False), (32, 16, 4, 1, False)]


def causal_flops(q_lens, seq_lens, heads, nope, rope, v_dim) -> float:
    pairs = sum(q * s - q * (q - 1) / 2 for q, s in zip(q_lens, seq_lens))
    return 2.0 * heads * (nope + rope + v_dim) * pairs


def make_case(q_lens, seq_lens, heads, dims, dtype, device, seed=0):
    """q as a view of the q projection, kv as kv_b_proj writes it, k_rope a column view of the gathered latents."""
    from tests.deepseek.test_mla_prefill_kernel import make_case as case

    return case(q_lens, seq_lens, heads, *dims, device=device, dtype=dtype, seed=seed)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=110.0)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        os.environ["TRITON_INTERPRET"] = "1"
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels import tuned_tables
    from vdeploy_kernels.mla_prefill_attention import VARIANT, MLAPrefillConfig, mla_prefill_attention
    from vdeploy_kernels.prefill_attention_configs import KIND, config_name

    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    dims = (16, 16, 16) if args.tiny else (NOPE, ROPE, VDIM)
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    long = 24 if args.tiny else 2048
    cases = {"r1_fresh": (128 if not args.tiny else 4, [long] * 4, [long] * 4),
             "r1_prefix": (128 if not args.tiny else 4, [long] * 2, [2 * long] * 2),
             "v2lite_fresh": (16 if not args.tiny else 2, [long] * 4, [long] * 4)}
    configs = [MLAPrefillConfig(*c) for c in (TINY_CONFIGS if args.tiny else CONFIGS)]
    tol = 1e-4 if args.tiny else 2e-2
    report = {"gpu": gpu, "dims": dims, "dtype": str(dtype), "cases": {}, "failures": []}
    deadline = time.time() + args.budget_s
    best_cfg = None
    for name, (heads, q_lens, seq_lens) in cases.items():
        q, kv, k_rope, qsl, lens = make_case(q_lens, seq_lens, heads, dims, dtype, device)
        scale = (dims[0] + dims[1]) ** -0.5
        want = ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), scale, dims[0]).float()
        flops = causal_flops(q_lens, seq_lens, heads, *dims)
        rows = []
        for cfg in (configs if name != "v2lite_fresh" or best_cfg is None else [best_cfg, configs[0]]):
            label = str(tuple(asdict(cfg).values()))
            if time.time() > deadline:
                print(f"  {name} {label}: skipped, over --budget-s", flush=True)
                continue

            def fn(c=cfg):
                return mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), scale, dims[0], config=c)

            try:
                err = ((fn().float() - want).norm() / want.norm()).item()
            except Exception as exc:  # noqa: BLE001 - over the shared-memory / register budget: no candidate
                print(f"  {name} {label}: skipped ({type(exc).__name__}: {str(exc).strip()[-160:]})", flush=True)
                continue
            ok = err < tol
            ms = median_call_ms(fn, device, args.reps)
            rows.append({"config": asdict(cfg), "ms": ms, "tflops": flops / ms / 1e9, "rel_err": err, "ok": ok})
            print(f"  {name:12s} {label:32s} {ms:8.3f} ms {flops / ms / 1e9:7.1f} TFLOP/s rel err {err:.1e}"
                  f"{'' if ok else '  <-- WRONG'}", flush=True)
            if not ok:
                report["failures"].append(f"{name} {label}: rel err {err:.2e}")
        good = [r for r in rows if r["ok"]]
        best = min(good, key=lambda r: r["ms"]) if good else None
        report["cases"][name] = {"heads": heads, "q_lens": q_lens, "seq_lens": seq_lens, "flops": flops,
                                 "rows": rows, "best": best}
        if name == "r1_fresh" and best is not None:
            best_cfg = MLAPrefillConfig(**best["config"])
    if best_cfg is not None and not args.tiny:
        folder = tuned_tables.tuned_dirs(KIND)[0]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / config_name(VARIANT, NOPE + ROPE, 1, dtype, gpu)
        path.write_text(json.dumps({str(long): asdict(best_cfg)}, indent=1, sort_keys=True) + "\n")
        report["table"] = str(path)
        print(f"wrote {path}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    if report["failures"]:
        print("FAILED:\n  " + "\n  ".join(report["failures"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
