"""Tune the block-FP8 W8A8 GEMM (kernels/fp8_gemm.py) for DeepSeek-R1's linear shapes on this GPU; write the tables
fp8_gemm_configs.py reads.

For each weight shape (N, K) of R1 at the given tensor-parallel sizes and each token count M: every Triton candidate
(tiles, warps, stages, K split, band grouping) and cuBLAS's block-scaled GEMM (torch._scaled_mm, Hopper) are timed
with CUDA events; the fastest wins if its output matches the torch twin (relative error < 1e-2, as the GPU tests
require). The heuristic default is timed beside it, and the roofline (weight + activation bytes over the copy
bandwidth measured in the same run; FLOPs) is reported. Runs once per GPU kind (minutes); the engine never tunes.

    python benchmarks/kernels/tune_fp8_gemm.py --tp 1 --out-dir kernels/configs/fp8_block_gemm --report $OUT/r.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_fused_moe import time_ms  # noqa: E402 - the same timing rule for every tuner

TOKENS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
WS_SMALL = [(4, 3), (4, 4), (4, 5)]
WS_LARGE = [(4, 3), (4, 4), (8, 3), (8, 4)]


def r1_shapes(tp: int) -> dict[str, tuple[int, int]]:
    """(N, K) per rank of every block-FP8 linear of DeepSeek-R1 (the bundled config) at tensor-parallel size tp."""
    cfg = json.loads((Path(__file__).resolve().parents[2] / "vdeploy/model_configs/deepseek-r1.config.json")
                     .read_text())
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"] // tp
    nope, rope, v = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    shared = cfg["n_shared_experts"] * cfg["moe_intermediate_size"] // tp
    inter = cfg["intermediate_size"] // tp
    return {
        "fused_qkv_a_proj": (cfg["q_lora_rank"] + cfg["kv_lora_rank"] + rope, h),  # q_a_proj ‖ kv_a_proj_with_mqa
        "q_b_proj": (heads * (nope + rope), cfg["q_lora_rank"]), "kv_b_proj": (heads * (nope + v), cfg["kv_lora_rank"]),
        "o_proj": (h, heads * v), "dense_gate_up": (2 * inter, h), "dense_down": (h, inter),
        "shared_gate_up": (2 * shared, h), "shared_down": (h, shared),
    }


def candidates(m: int, n: int, k: int, sms: int) -> list[dict]:
    k_blocks = -(-k // 128)
    out = []
    if m <= 16:
        for bn in (32, 64, 128):
            for warps, stages in WS_SMALL:
                for split in (1, 2, 4, 8):
                    tiles = -(-n // bn)
                    if split > 1 and (tiles * split > 8 * sms or k_blocks < 2 * split):
                        continue
                    out.append({"block_m": 16, "block_n": bn, "num_warps": warps, "num_stages": stages,
                                "split_k": split})
    elif m <= 128:
        for bm in (32, 64):
            for bn in (64, 128):
                for warps, stages in WS_SMALL[:2] + [(8, 3)]:
                    for split in (1, 2, 4):
                        if split > 1 and k_blocks < 2 * split:
                            continue
                        out.append({"block_m": bm, "block_n": bn, "num_warps": warps, "num_stages": stages,
                                    "split_k": split})
    else:
        for bm in (64, 128):
            for bn in (128, 256):
                for warps, stages in WS_LARGE:
                    out.append({"block_m": bm, "block_n": bn, "num_warps": warps, "num_stages": stages,
                                "group_m": 8})
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def tune_shape(n: int, k: int, tokens: list[int], bandwidth: float, sms: int, cublas: bool) -> dict:
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels.fp8_gemm import w8a8_block_matmul
    from vdeploy_kernels.fp8_gemm_configs import default_config

    wq, ws = ref.quantize_weight_block(torch.randn(n, k, device="cuda") * 0.05)
    rows = {}
    for m in tokens:
        xq, xs = ref.quantize_act_per_token_group(torch.randn(m, k, device="cuda"))
        expected = ref.w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)

        def run(cfg):
            return w8a8_block_matmul(xq, xs, wq, ws, (128, 128), torch.bfloat16, cfg)

        timed = []
        pool = candidates(m, n, k, sms) + ([{"backend": "scaled_mm"}] if cublas else [])
        for cfg in pool:
            try:
                ms = time_ms(lambda: run(cfg))
            except Exception as exc:  # noqa: BLE001 - out of shared memory / registers, or cuBLAS refused the shape
                if cfg.get("backend") or "resources" in str(exc).lower() or "OutOfResources" in type(exc).__name__:
                    continue
                raise
            timed.append((ms, cfg))
        timed.sort(key=lambda p: p[0])
        best_ms, best = next(((ms, cfg) for ms, cfg in timed if rel_err(run(cfg), expected) < 1e-2), timed[-1])
        default_ms = time_ms(lambda: run(default_config(m)))
        cublas_ms = next((ms for ms, cfg in timed if cfg.get("backend")), None)
        nbytes = n * k + m * k + 2 * m * n + 4 * (n // 128 + 1) * (k // 128 + 1)
        rows[m] = {"config": best, "tuned_ms": best_ms, "default_ms": default_ms, "scaled_mm_ms": cublas_ms,
                   "err_vs_twin": rel_err(run(best), expected),
                   "fraction_of_copy_bandwidth": nbytes / bandwidth / (best_ms / 1e3),
                   "tflops": 2 * m * n * k / (best_ms / 1e3) / 1e12}
        print(f"N={n} K={k} M={m}: {best_ms:.4f} ms (default {default_ms:.4f}, cuBLAS {cublas_ms}) {best}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens", type=int, nargs="+", default=TOKENS)
    parser.add_argument("--only", nargs="*", default=None, help="layer names of r1_shapes (default: all)")
    parser.add_argument("--out-dir", default=None, help="default: $VDEPLOY_HOME/kernel_configs/fp8_block_gemm")
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    from vdeploy.bench.hardware import copy_bandwidth
    from vdeploy_kernels.fp8_gemm_configs import KIND, config_name
    from vdeploy_kernels.tuned_tables import tuned_dirs

    out_dir = Path(args.out_dir) if args.out_dir else tuned_dirs(KIND)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    cublas = torch.cuda.get_device_capability() == (9, 0)
    bandwidth = copy_bandwidth(torch.device("cuda"), 1 << 30)
    report = {"gpu": gpu, "copy_bandwidth_gbs": bandwidth / 1e9, "shapes": {}}
    done = set()
    for tp in args.tp:
        for layer, (n, k) in r1_shapes(tp).items():
            if (args.only and layer not in args.only) or (n, k) in done:
                continue
            done.add((n, k))
            rows = tune_shape(n, k, args.tokens, bandwidth, sms, cublas)
            name = config_name(n, k, (128, 128), gpu)
            (out_dir / name).write_text(json.dumps({str(m): r["config"] for m, r in rows.items()}, indent=1) + "\n")
            report["shapes"][f"tp{tp}-{layer}"] = {"n": n, "k": k, "file": name, "rows": rows}
            if args.report:
                Path(args.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
