"""Decode attention, this checkout's kernel against a baseline copy of kernels/decode_attention.py (an A/B in one
run on one GPU): outputs against the torch twin and each other, and µs per call as CUDA graphs of calls over page
sets cycled past the L2, Llama-3.1-8B heads (32 query, 8 KV, D 128), bf16, pages of 16.

    git show REV:kernels/decode_attention.py > /tmp/base_decode_attention.py       # here
    python benchmarks/kernels/decode_attention_ab.py --baseline /tmp/base_decode_attention.py --out DIR   # GPU
    python benchmarks/kernels/decode_attention_ab.py --baseline FILE --out DIR --device cpu   # CPU: the script

Both modules keep the same `decode_attention(q, kv_cache, out, seq_lens, block_tables, num_decodes, scale, dv)`.
--mla-baseline FILE (a copy of kernels/mla_attention.py) adds MLA decode rows at R1's width (128 heads, latent 512 +
rope 64, bf16 cache), the model's default splits for each batch.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from w4a16_decode_timing import MIN_CALLS, graph_us  # noqa: E402

from vdeploy_kernels import reference  # noqa: E402
from vdeploy_kernels import decode_attention as current  # noqa: E402
from vdeploy_kernels.paged_batch import make_paged_batch  # noqa: E402

SPAN_BYTES = 1 << 30  # distinct KV touched per timed graph (L2 ~50 MB)


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("baseline_decode_attention", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def mla_batch(batch: int, ctx: int, heads: int, lora: int, rope: int, dtype, device: str, gen):
    """q [B, H, L+R], a latent cache with each request's pages shuffled, and its decode metadata."""
    from vdeploy.layers.forward_context import AttentionMetadata

    block = 64
    pages = -(-ctx // block)
    num_blocks = batch * pages
    cache = torch.randn(1, num_blocks, block, 1, lora + rope, generator=gen).to(device, dtype)
    tables = torch.randperm(num_blocks, generator=gen).to(torch.int32).view(batch, pages).to(device)
    arange = torch.arange(batch + 1, dtype=torch.int32, device=device)
    seq_lens = [ctx] * batch
    meta = AttentionMetadata(torch.zeros(batch, dtype=torch.long, device=device), arange,
                             torch.tensor(seq_lens, dtype=torch.int32, device=device), tables, 1, ctx, batch, block,
                             [1] * batch, seq_lens)
    q = torch.randn(batch, heads, lora + rope, generator=gen).to(device, dtype)
    return q, cache, meta


def mla_rows(base, args, cuda: bool, gen) -> list[dict]:
    from vdeploy_kernels import mla_attention as current_mla
    from vdeploy_kernels import reference_deepseek

    heads, lora, rope = (128, 512, 64) if cuda else (4, 32, 16)
    dtype = torch.bfloat16 if cuda else torch.float32
    rows = []
    for batch in args.batches if cuda else args.batches[:2]:
        ctx = 1024 if cuda else 70
        cases = [mla_batch(batch, ctx, heads, lora, rope, dtype, args.device, gen) for _ in range(4 if cuda else 1)]
        res = {}
        for name, module in (("baseline", base), ("current", current_mla)):
            def call(i, module=module):
                q, cache, meta = cases[i % len(cases)]
                return module.mla_attention(q, cache, meta, 0.1, lora)
            res[name] = call(0)
            res[name + "_us"] = graph_us([lambda i=i: call(i) for i in range(MIN_CALLS)]) if cuda else 0.0
            res[name + "_again"] = torch.equal(call(0), res[name])
        q, cache, meta = cases[0]
        ref = reference_deepseek.mla_attention(q.float(), cache.float(), meta, 0.1, lora)
        err = ((res["current"].double() - ref.double()).norm() / ref.double().norm()).item()
        row = {"kernel": "mla", "batch": batch, "context": ctx, "baseline_us": res["baseline_us"],
               "current_us": res["current_us"], "rel_err_current": err, "same_after_replays": res["current_again"],
               "max_abs_diff": (res["baseline"].float() - res["current"].float()).abs().max().item(),
               "ok": err < 2e-2 and res["current_again"]}
        if cuda:
            row["speedup"] = row["baseline_us"] / row["current_us"]
        rows.append(row)
        print(f"MLA B={batch:4d} ctx={ctx:5d}  baseline {row['baseline_us']:8.2f} us  current {row['current_us']:8.2f} us  "
              f"err {err:.1e}  diff {row['max_abs_diff']:.1e}  {'ok' if row['ok'] else 'FAIL'}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="a copy of an earlier kernels/decode_attention.py")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    ap.add_argument("--contexts", type=int, nargs="+", default=[640, 2048])
    ap.add_argument("--mla-baseline", default=None, help="a copy of an earlier kernels/mla_attention.py")
    ap.add_argument("--git-rev", default="unknown")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    base = load_module(args.baseline)
    heads, kv_heads, d = (32, 8, 128) if cuda else (4, 2, 64)
    dtype = torch.bfloat16 if cuda else torch.float16
    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch in args.batches if cuda else args.batches[:2]:
        for ctx in args.contexts if cuda else [37]:
            kv_bytes = batch * ctx * kv_heads * d * 2 * 2
            copies = max(1, -(-SPAN_BYTES // kv_bytes)) if cuda else 1
            copies = min(copies, 64)
            cases = [make_paged_batch([1] * batch, [ctx] * batch, num_heads=heads, num_kv_heads=kv_heads, head_dim=d,
                                      block_size=16, dtype=dtype, generator=torch.Generator(args.device).manual_seed(batch),
                                      device=args.device)
                     for _ in range(min(copies, 8))]
            outs = {}
            for name, module in (("baseline", base), ("current", current)):
                def call(i, module=module):
                    c = cases[i % len(cases)]
                    out = torch.empty(batch, heads, d, dtype=dtype, device=args.device)
                    module.decode_attention(c.q, c.kv_cache, out, c.meta.seq_lens, c.meta.block_tables, batch,
                                            d**-0.5, d)
                    return out
                outs[name] = call(0)
                count = max(MIN_CALLS, len(cases)) if cuda else 1
                outs[name + "_us"] = graph_us([lambda i=i: call(i) for i in range(count)]) if cuda else 0.0
                outs[name + "_again"] = torch.equal(call(0), outs[name])  # after graph replays: counters reset
            ref = reference.paged_attention(cases[0].q, cases[0].kv_cache, cases[0].meta, d**-0.5)
            err = {n: ((outs[n].double() - ref.double()).norm() / ref.double().norm()).item()
                   for n in ("baseline", "current")}
            row = {"kernel": "decode", "batch": batch, "context": ctx, "kv_bytes": kv_bytes, "baseline_us": outs["baseline_us"],
                   "current_us": outs["current_us"], "rel_err_baseline": err["baseline"], "rel_err_current": err["current"],
                   "max_abs_diff": (outs["baseline"].float() - outs["current"].float()).abs().max().item(),
                   "same_after_replays": outs["current_again"], "ok": err["current"] < 1e-2 and outs["current_again"]}
            if cuda:
                row["speedup"] = row["baseline_us"] / row["current_us"]
                row["current_TBps"] = kv_bytes / row["current_us"] * 1e-6
            rows.append(row)
            print(f"B={batch:4d} ctx={ctx:5d}  baseline {row['baseline_us']:8.2f} us  current {row['current_us']:8.2f} us  "
                  f"err {err['current']:.1e}  diff {row['max_abs_diff']:.1e}  {'ok' if row['ok'] else 'FAIL'}", flush=True)
    if args.mla_baseline:
        rows += mla_rows(load_module(args.mla_baseline), args, cuda, gen)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "decode_attention_ab", "git_revision": args.git_rev, "baseline": args.baseline,
              "device": torch.cuda.get_device_name() if cuda else "cpu",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "rows": rows}
    (args.out / "decode_attention_ab.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
