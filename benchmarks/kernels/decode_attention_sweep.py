"""Decode attention (dense models) per batch size: check every candidate config against the torch twin, time it as
CUDA graphs over page sets cycled past the L2, and write the tuned table decode_attention.tuned_decode_config reads.

Why: at batch 1 the heuristic splits a request's context over up to 32 programs per KV head and merges them in a
second launch; a Llama-8B decode step spent 7.8 us a layer there at 640 tokens of context (2026-12-07d, H100), ~4 % of
the step, for 2.6 MB of KV. Candidates: tile of 32 / 64 / 128 tokens x 1-32 splits x 2 / 3 stages (4 warps). One
split writes the output itself (no second launch). A graph replays one config for every context, so each config is
scored by its summed time over --contexts, and a batch size gets a table row only where the best config beats the
heuristic by TABLE_WIN over that sum and at every context.

    PYTHONPATH=/tmp/shim:$PWD python3 benchmarks/kernels/decode_attention_sweep.py --out $OUT/decode_sweep.json \
        --table-dir $OUT/tables        # then copy tables/decode_attention/*.json to kernels/configs/decode_attention/
    python3 benchmarks/kernels/decode_attention_sweep.py --tiny --out /tmp/d.json    # CPU interpreter, correctness

Shapes: Llama-3.1-8B (32 query / 8 KV heads) and Qwen2-7B (28 / 4), head dim 128, bf16 cache, pages of 16.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

if "--tiny" in sys.argv:  # before any kernel import: the interpreter is chosen when triton.jit runs
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from w4a16_decode_timing import MIN_CALLS, graph_us  # noqa: E402

SHAPES = {"llama-8b": (32, 8, 128), "qwen2-7b": (28, 4, 128)}  # query heads, KV heads, head dim
TINY_SHAPES = {"tiny": (4, 2, 64)}
BLOCK_NS, SPLITS, STAGES = (32, 64, 128), (1, 2, 4, 8, 16, 32), (2, 3)
SPAN_BYTES = 1 << 30  # distinct KV touched per timed graph (L2 ~50 MB)
TABLE_WIN = 1.05


def candidates(tiny: bool) -> list:
    from vdeploy_kernels.decode_attention import DecodeConfig

    if tiny:
        return [DecodeConfig(16, 1, 4, 1), DecodeConfig(16, 4, 4, 1)]
    return [DecodeConfig(n, s, 4, st) for n, s, st in itertools.product(BLOCK_NS, SPLITS, STAGES)]


def sweep_shape(heads: int, kv_heads: int, d: int, batch: int, contexts: list[int], configs, args) -> dict:
    from vdeploy_kernels import reference
    from vdeploy_kernels.decode_attention import decode_attention, default_decode_config
    from vdeploy_kernels.paged_batch import make_paged_batch

    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    default = default_decode_config(batch, kv_heads, d, torch.device(args.device))
    per_ctx = {}
    for ctx in contexts:
        kv_bytes = batch * ctx * kv_heads * d * 2 * 2
        copies = min(8, max(1, -(-SPAN_BYTES // kv_bytes))) if cuda else 1
        gen = torch.Generator(args.device).manual_seed(batch * 7919 + ctx)
        cases = [make_paged_batch([1] * batch, [ctx] * batch, num_heads=heads, num_kv_heads=kv_heads, head_dim=d,
                                  block_size=16, dtype=dtype, generator=gen, device=args.device)
                 for _ in range(copies)]
        ref = reference.paged_attention(cases[0].q, cases[0].kv_cache, cases[0].meta, d ** -0.5).double()
        rows = {}
        for cfg in [default] + configs:
            def call(i, cfg=cfg):
                c = cases[i % len(cases)]
                out = torch.empty(batch, heads, d, dtype=dtype, device=args.device)
                decode_attention(c.q, c.kv_cache, out, c.meta.seq_lens, c.meta.block_tables, batch, d ** -0.5, d, cfg)
                return out
            got = call(0).double()
            err = ((got - ref).norm() / ref.norm()).item()
            us = graph_us([lambda i=i: call(i) for i in range(max(MIN_CALLS, len(cases)))]) if cuda else 0.0
            rows[json.dumps(asdict(cfg))] = {"us": us, "rel_err": err, "ok": err < 1e-2}
        per_ctx[ctx] = rows
    keys = list(per_ctx[contexts[0]])
    ok = [k for k in keys if all(per_ctx[c][k]["ok"] for c in contexts)]
    total = {k: sum(per_ctx[c][k]["us"] for c in contexts) for k in ok}
    default_key = keys[0]
    best = min(ok, key=lambda k: total[k]) if ok else None
    wins = (best is not None and default_key in total and 0 < total[best] * TABLE_WIN <= total[default_key]
            and all(per_ctx[c][best]["us"] <= per_ctx[c][default_key]["us"] for c in contexts))
    return {"batch": batch, "default": json.loads(default_key), "best": json.loads(best) if best else None,
            "default_us": {c: per_ctx[c][default_key]["us"] for c in contexts},
            "best_us": {c: per_ctx[c][best]["us"] for c in contexts} if best else None,
            "speedup": (total[default_key] / total[best]) if best and total[best] else None, "table_row": wins,
            "failures": [k for k in keys if k not in ok],
            "rows": {c: {k: per_ctx[c][k] for k in sorted(keys, key=lambda k: per_ctx[c][k]["us"])[:8]}
                     for c in contexts}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--table-dir", type=Path, default=None, help="write tables/decode_attention/<name>.json here")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 640, 2048])
    ap.add_argument("--budget-s", type=float, default=100.0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--git-rev", default="unknown")
    args = ap.parse_args(argv)
    args.device = "cpu" if args.tiny else "cuda"
    from vdeploy_kernels.decode_attention import KIND, config_name
    from vdeploy_kernels.tuned_tables import write_merged_table

    shapes = TINY_SHAPES if args.tiny else SHAPES
    batches, contexts = (args.batches[:1], [37]) if args.tiny else (args.batches, args.contexts)
    configs = candidates(args.tiny)
    gpu = torch.cuda.get_device_name() if not args.tiny else "cpu"
    deadline = time.monotonic() + args.budget_s
    report = {"benchmark": "decode_attention_sweep", "git_revision": args.git_rev, "device": gpu,
              "contexts": contexts, "results": {}, "cut_short": False, "tables": []}
    failures = []
    for name, (heads, kv_heads, d) in shapes.items():
        table_rows = {}
        for batch in batches:
            if time.monotonic() > deadline:
                report["cut_short"] = True
                break
            res = sweep_shape(heads, kv_heads, d, batch, contexts, configs, args)
            report["results"][f"{name} B={batch}"] = res
            failures += [f"{name} B={batch} {k}" for k in res["failures"]]
            if res["table_row"]:
                table_rows[str(batch)] = res["best"]
            print(f"{name:9s} B={batch:3d}  default {res['default_us']}  best {res['best_us']} {res['best']}  "
                  f"x{res['speedup'] or 0:.2f}{'  -> table' if res['table_row'] else ''}", flush=True)
        if table_rows and args.table_dir and not args.tiny:
            table = config_name(d, heads // kv_heads, torch.bfloat16, gpu)
            report["tables"].append(str(write_merged_table(KIND, table, table_rows, args.table_dir)))
    report["failures"] = failures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print("all ok" if not failures else f"{len(failures)} config(s) FAILED the twin check", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
