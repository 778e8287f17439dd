"""Find the illegal memory access of the tiny DeepSeek-V3 on the GPU (2026-12-06): the expanded-prefill kernel
(`contiguous_prefill_attention`) at the tiny model's head dims (keys 16 + 8 = 24, values 16, 4 heads) on the
memory profile's warm-up batch (512 requests x 32 tokens), per dtype and launch config, each case in its own
process (an illegal access poisons the CUDA context). Prints one line per case: ok / max error / crash.

    python benchmarks/kernels/tiny_prefill_probe.py            # every case
    python benchmarks/kernels/tiny_prefill_probe.py CASE       # one case (what the parent runs)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CASES = [  # (dtype, requests, tokens each, head dim, value dim, config or None = the default heuristic)
    # 2026-12-06, H100: the first bf16 case crashed (illegal memory access), every float32 one passed
    ("float32", 512, 32, 24, 16, None), ("bfloat16", 512, 32, 24, 16, None), ("bfloat16", 3, 37, 24, 16, None),
    ("bfloat16", 512, 32, 24, 16, (64, 64, 4, 1)), ("bfloat16", 512, 32, 24, 16, (64, 64, 4, 2)),
    ("bfloat16", 512, 32, 24, 16, (32, 32, 4, 1)), ("bfloat16", 512, 32, 24, 16, (64, 32, 4, 3)),
    ("bfloat16", 512, 32, 32, 16, None), ("bfloat16", 512, 32, 32, 32, None),
    ("float16", 512, 32, 24, 16, None), ("bfloat16", 512, 32, 64, 64, None), ("bfloat16", 512, 32, 192, 128, None),
]


def run_case(case: list) -> dict:
    import torch

    from vdeploy_kernels.prefill_attention import PrefillConfig, default_prefill_config, prefill_attention
    from vdeploy_kernels.reference_deepseek import contiguous_prefill_attention as twin

    dtype_name, reqs, n, d, dv, cfg = case
    dtype, heads = getattr(torch, dtype_name), 4
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(reqs * n, heads, d, device="cuda", generator=gen).to(dtype)
    kv = torch.randn(2, reqs * n, heads, d, device="cuda", generator=gen).to(dtype)
    qsl = torch.arange(0, reqs * n + 1, n, device="cuda", dtype=torch.int32)
    lens = torch.full((reqs,), n, device="cuda", dtype=torch.int32)
    config = PrefillConfig(*cfg) if cfg else default_prefill_config(d, q.device, n)
    starts = torch.cumsum(lens, 0) - lens
    tables = (starts[:, None] + torch.arange(n, device="cuda")[None, :]).to(torch.int32)
    out = torch.empty(q.shape[0], heads, dv, dtype=dtype, device="cuda")
    prefill_attention(q, kv.unsqueeze(2), out, qsl, lens, tables, 0, reqs, n, d ** -0.5, dv, config=config)
    torch.cuda.synchronize()
    ref = twin(q, kv, qsl, lens, n, n, d ** -0.5, dv)
    return {"config": str(config), "max_err": float((out.float() - ref.float()).abs().max())}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run_case(json.loads(sys.argv[1]))))
        return
    for case in CASES:
        proc = subprocess.run([sys.executable, __file__, json.dumps(case)], capture_output=True, text=True,
                              env={**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}, timeout=300)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else \
            "CRASH " + " | ".join(proc.stderr.strip().splitlines()[-3:])[:300]
        print(case, "->", line, flush=True)


if __name__ == "__main__":
    main()
