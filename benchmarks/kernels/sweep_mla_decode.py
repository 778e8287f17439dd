"""MLA decode attention tiles: heads per program, KV tile, warps, stages; each checked against the torch twin.

Every head block re-reads the whole latent context, so the number of heads per program sets how many times a
decode step streams the cache (R1 at TP 1: 128 heads). Reports time, the bytes the step must read (the cache once)
over the copy bandwidth measured in the same run, and the relative error against the twin.

    python benchmarks/kernels/sweep_mla_decode.py --out mla_sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

CONFIGS = {  # heads -> [(block_h, block_n, num_warps, num_stages)]; the first is the previous default
    128: [(16, 32, 4, 2), (32, 32, 4, 2), (32, 32, 8, 2), (64, 32, 8, 2), (64, 16, 8, 2), (64, 32, 8, 3),
          (64, 64, 8, 2)],
    16: [(16, 32, 4, 2), (16, 64, 4, 2), (16, 32, 4, 3), (16, 64, 8, 2), (16, 16, 4, 2)],
}


def case(batch: int, heads: int, ctx: int, block_size: int = 64, lora: int = 512, rope: int = 64):
    from vdeploy.layers.forward_context import AttentionMetadata

    seq = ctx + 1
    per_seq = -(-seq // block_size)
    num_blocks = batch * per_seq
    cache = torch.randn(1, num_blocks, block_size, 1, lora + rope, device="cuda", dtype=torch.bfloat16)
    tables = torch.randperm(num_blocks, device="cuda").to(torch.int32).view(batch, per_seq)
    seq_lens = torch.full((batch,), seq, dtype=torch.int32, device="cuda")
    qsl = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
    meta = AttentionMetadata(torch.zeros(batch, dtype=torch.long, device="cuda"), qsl, seq_lens, tables, 1, seq,
                             batch, block_size, [1] * batch, [seq] * batch)
    q = torch.randn(batch, heads, lora + rope, device="cuda", dtype=torch.bfloat16)
    return q, cache, meta, batch * seq * (lora + rope) * 2


def main() -> None:
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels.mla_attention import decode_tiles, mla_attention

    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from vdeploy.bench.hardware import copy_bandwidth, device_ms

    cuda = torch.device("cuda")
    bandwidth = copy_bandwidth(cuda, 2 << 30)
    rows = []
    for heads, configs in CONFIGS.items():
        for batch in args.batches:
            q, cache, meta, nbytes = case(batch, heads, args.ctx)
            expected = ref.mla_attention(q.float(), cache.float(), meta, 0.1, 512)
            for bh, bn, warps, stages in configs:
                tiles = {"block_h": bh, "block_n": bn, "num_warps": warps, "num_stages": stages}
                try:
                    out = mla_attention(q, cache, meta, 0.1, 512, tiles=tiles)
                    ms = device_ms(lambda: mla_attention(q, cache, meta, 0.1, 512, tiles=tiles), cuda, 20)
                except Exception as exc:  # noqa: BLE001 - past the registers or shared memory: not a candidate
                    rows.append({"heads": heads, "batch": batch, "tiles": tiles, "error": str(exc)[:200]})
                    print(f"H={heads} B={batch} {tiles}: {type(exc).__name__}", flush=True)
                    continue
                err = ((out.float() - expected).norm() / expected.norm()).item()
                frac = nbytes / bandwidth / (ms / 1e3)
                rows.append({"heads": heads, "batch": batch, "context": args.ctx, "tiles": tiles, "ms": ms,
                             "fraction_of_copy_bandwidth": frac, "rel_err": err,
                             "is_default": dict(tiles, value_split=1) == decode_tiles(heads)})
                print(f"H={heads} B={batch} {bh:3d}/{bn:2d}/{warps}w/{stages}s: {ms:.3f} ms, {frac:.2f} of copy BW, "
                      f"err {err:.1e}{'  <- default' if rows[-1]['is_default'] else ''}", flush=True)
    report = {"gpu": torch.cuda.get_device_name(), "copy_bandwidth_gbs": bandwidth / 1e9, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
