"""Fresh-prompt prefill attention: the engine's route against the attention kernels torch ships, at the
Llama-3.1-8B head shape (H=32, Hk=8, D=128, bf16, causal), each output checked against the fp32 torch twin.

The question (issue 14, `prefill_8x4096` at 0.96-0.99 of vLLM): our Triton fresh-prefill kernel does ~300 TFLOP/s on
an H100 where vLLM's FlashAttention-3 does ~500; attention is ~10 % of that benchmark's step. If a kernel torch
already ships were faster at these shapes, the engine could route long fresh prompts to it. On an H100 (2026-12-07,
`benchmarks/results/2026-12-07b-h100/`) ours was faster than both, so the engine has no such route; this probe
says whether a new GPU or torch changes that. Rows:
  vdeploy        paged_attention(..., new_kv=...): what the engine runs (tuned tables apply)
  flash-varlen   torch's FlashAttention-2 over the packed prompts (cu_seqlens; GQA native), one launch
  cudnn-per-seq  scaled_dot_product_attention per prompt on cuDNN's fused attention, K/V heads repeated to H (the
                 cuDNN path takes no GQA), its [1, H, L, D] output copied into the packed rows
  vllm-fa3       vLLM's FlashAttention-3 varlen (contiguous k / v), only where the peer bundle's vllm is importable
                 (PYTHONPATH=/tmp/peer/site): what the peer runs, to size our kernel's gap; never a route
A backend this torch build or GPU lacks is listed under "skipped" with its error. Times: median of --reps calls
after warm-up (CUDA events).

    PYTHONPATH=/tmp/shim:$PWD python3 benchmarks/kernels/prefill_attention_backends.py --out $OUT/prefill_backends.json
    (--tiny: the plumbing on the CPU interpreter, vdeploy row only where a backend needs CUDA)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vdeploy from this checkout when run as a script
from vdeploy.bench.hardware import median_call_ms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark helpers
from bench_device import kernel_device  # noqa: E402
from prefill_attention_sweep import LLAMA8B, TINY, causal_flops, make_case  # noqa: E402


WIN = 1.1  # a backend this much faster than ours would be worth routing to


def torch_fresh_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, row_starts: list[int],
                        scale: float, backend: str) -> None:
    """Attention of the prompts whose rows are [row_starts[i], row_starts[i + 1]) (host ints), into out [T, H, D];
    q [T, H, D], k / v [T, Hk, D], causal within each prompt (the fresh prefill kernel's contract)."""
    first, last = row_starts[0], row_starts[-1]
    if backend == "flash-varlen":
        cu = torch.tensor([s - first for s in row_starts], dtype=torch.int32, device=q.device)  # [B + 1]
        longest = max(b - a for a, b in zip(row_starts[:-1], row_starts[1:]))
        result = torch.ops.aten._flash_attention_forward(q[first:last], k[first:last], v[first:last], cu, cu,
                                                         longest, longest, 0.0, True, False, scale=scale)
        out[first:last] = result[0]
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    group = q.shape[1] // k.shape[1]
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        for a, b in zip(row_starts[:-1], row_starts[1:]):
            qi = q[a:b].transpose(0, 1).unsqueeze(0)  # [1, H, L, D]
            ki = k[a:b].transpose(0, 1).unsqueeze(0).repeat_interleave(group, dim=1)  # [1, H, L, D]
            vi = v[a:b].transpose(0, 1).unsqueeze(0).repeat_interleave(group, dim=1)
            out[a:b] = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale)[0].transpose(0, 1)


def backends(q, k, v, meta, scale) -> dict[str, Callable[[], torch.Tensor]]:
    """Each torch backend as a callable returning [T, H, D]."""
    starts = list(itertools.accumulate(meta.query_lens_host, initial=0))

    def run(backend):
        out = torch.empty_like(q)
        torch_fresh_prefill(q, k, v, out, starts, scale, backend)
        return out

    rows = {name: (lambda name=name: run(name)) for name in ("flash-varlen", "cudnn-per-seq")}
    try:  # the peer's FlashAttention-3, for the gap only (vdeploy never imports vllm)
        from vllm.vllm_flash_attn import flash_attn_varlen_func
    except Exception:  # noqa: BLE001 - no peer bundle on the path
        return rows
    cu = torch.tensor(starts, dtype=torch.int32, device=q.device)  # [B + 1]
    longest = max(meta.query_lens_host)
    rows["vllm-fa3"] = lambda: flash_attn_varlen_func(q, k, v, longest, cu, longest, cu_seqlens_k=cu,
                                                      softmax_scale=scale, causal=True, fa_version=3)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    device = kernel_device(args.tiny)
    from vdeploy_kernels import reference
    from vdeploy_kernels.paged_attention import paged_attention

    shape = TINY if args.tiny else LLAMA8B
    dtype = torch.float32 if args.tiny else torch.bfloat16
    tol = 1e-4 if args.tiny else 1e-2
    torch.backends.cuda.matmul.allow_tf32 = False
    cases = {"8x4096": [4096] * 8, "32x1024": [1024] * 32} if not args.tiny else {"2x40": [40, 23]}
    report = {"gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "shape": shape, "cases": {}, "skipped": []}
    failures = []
    for seed, (name, lens) in enumerate(cases.items()):
        batch, (k, v) = make_case(lens, lens, shape, dtype, device, seed)
        meta, q = batch.meta, batch.q
        scale = shape["head_dim"] ** -0.5
        ref = reference.paged_attention(q, batch.kv_cache, meta, scale).float()  # [T, H, D]
        flops = causal_flops(lens, lens, shape["num_heads"], shape["head_dim"])
        rows = {}
        candidates = {"vdeploy": lambda: paged_attention(q, batch.kv_cache, meta, scale, new_kv=(k, v))}
        if device.type == "cuda":
            candidates.update(backends(q, k, v, meta, scale))
        for label, fn in candidates.items():
            try:
                got = fn().float()
                torch.cuda.synchronize() if device.type == "cuda" else None
            except Exception as exc:  # noqa: BLE001 - a backend this build or GPU lacks is no candidate
                msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                print(f"{name:8s} {label:14s} skipped: {msg}", flush=True)
                report["skipped"].append({"case": name, "backend": label, "error": msg})
                continue
            diff = (got - ref).abs()
            ok = bool((diff <= tol + tol * ref.abs()).all())
            ms = median_call_ms(fn, device, args.reps)
            rows[label] = {"ms": ms, "tflops": flops / ms / 1e9, "max_abs_err": diff.max().item(), "ok": ok}
            print(f"{name:8s} {label:14s} {ms:8.3f} ms {flops / ms / 1e9:7.1f} TFLOP/s  max|err| "
                  f"{diff.max().item():.2e}{'' if ok else '  <-- WRONG'}", flush=True)
            if not ok:
                failures.append(f"{name} {label}")
        base = rows.get("vdeploy", {}).get("ms")
        for label, row in rows.items():
            row["speedup_vs_vdeploy"] = round(base / row["ms"], 3) if base else None
        report["cases"][name] = {"lens": lens[:1] + ["..."], "flops": flops, "rows": rows}
        wins = [(r["speedup_vs_vdeploy"], label) for label, r in rows.items()
                if label not in ("vdeploy", "vllm-fa3") and r["ok"] and (r["speedup_vs_vdeploy"] or 0) >= WIN]
        if wins:
            report["cases"][name]["worth_routing_to"] = max(wins)[1]
            print(f"{name:8s} {max(wins)[1]} beats ours by {max(wins)[0]:.2f}x: worth routing fresh prompts to",
                  flush=True)
        batch = q = k = v = ref = candidates = None  # free the case before the next one
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["failures"] = failures
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
