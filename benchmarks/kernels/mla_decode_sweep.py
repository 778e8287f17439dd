"""MLA decode (absorbed; R1 shapes, or V2-Lite's 16 heads with --heads 16) sweep: check every config against the torch twin, time it, write the tuned table.

At R1's 128 heads MLA decode is compute-bound (~240 FLOP per cached byte). Candidates vary heads per program
(block_h), KV tile (block_n), warps, stages and, for small batches, the KV-split grid target. For each batch: (a) max abs / relative error against kernels/reference_deepseek.py::mla_attention (exits
non-zero if any config is off); (b) median of CUDA-event timings, TFLOP/s (2·H·ctx·(576+512) per row) and the
latent-cache read rate, beside the kernel's heuristic default; (c) the fastest config per batch goes into
$VDEPLOY_HOME/kernel_configs/mla_decode/H128-L512-R64-bfloat16-<GPU>.json (the file mla_attention.decode_config reads;
commit it under kernels/configs/mla_decode/), and the rows into --out. Compiles run first in parallel worker processes
(they fill Triton's on-disk cache), so the whole sweep stays within ~2 minutes on an H200.

    PYTHONPATH=/tmp/shim:$PWD python3 benchmarks/kernels/mla_decode_sweep.py --out $OUT/mla_sweep.json
    PYTHONPATH=/tmp/shim:$PWD python3 benchmarks/kernels/mla_decode_sweep.py --heads 16 --out $OUT/mla16.json
    python3 benchmarks/kernels/mla_decode_sweep.py --tiny      # CPU, Triton interpreter, correctness only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if "--tiny" in sys.argv:  # before any kernel import: the interpreter is chosen when triton.jit runs
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from vdeploy.bench.hardware import median_call_ms  # noqa: E402

LORA, ROPE, SCALE = 512, 64, 0.1
CASES = [(1, 1024), (64, 1024), (256, 1024), (256, 2048), (1024, 1024)]  # (batch, context)
CASES_16 = [(1, 1024), (64, 1024), (256, 1024), (512, 1536), (1024, 1024)]  # V2-Lite: 500 requests, ~1.5k context
# (block_h, block_n, num_warps, num_stages). First H100 runs (2026-12-06, results/2026-12-06-h100-mla-decode-sweep/):
# the default 64/64/8/2 won at batch >= 64; 16 warps lost 1.5-2x everywhere (dropped); a value-split variant (two
# programs per head block, each owning 256 value channels, the scores computed twice) lost 7-21 % and was removed.
TILES = [(64, 64, 8, 2), (64, 64, 8, 3), (64, 32, 8, 2), (64, 32, 8, 3), (64, 128, 8, 1), (128, 32, 8, 2),
         (128, 16, 8, 3)]
# 16 heads (V2-Lite): one head block per row, memory-bound (~30 FLOP per cached byte): longer KV tiles, more warps
TILES_16 = [(16, 32, 4, 2), (16, 64, 4, 2), (16, 64, 4, 3), (16, 32, 4, 3), (16, 64, 8, 2), (16, 128, 4, 2),
            (16, 128, 8, 2), (16, 64, 8, 3), (16, 32, 2, 2), (16, 16, 4, 3)]
GRID_TARGET_MORE = 528  # small batches only: twice the KV splits of the default (264 programs)
# 16 heads at 256-1,024 rows: one program per row ran the cache at 0.59-0.81 of the copy bandwidth on an H100
# (2026-12-06d): too few programs in flight per SM for a latency-bound loop; KV splits add programs (and a reduce)
GRID_TARGETS_16_LARGE = (1056, 2112)


def page_size() -> int:
    from vdeploy.config import CacheConfig

    return CacheConfig.block_size  # the engine's default page


def make_case(batch: int, ctx: int, heads: int, device: str, dtype: torch.dtype, block_size: int, seed: int = 0):
    """The model's operands: q_lat as W_UK's bmm output ([H, T, L] transposed), q_rope a view of q_b_proj's
    output; each request's decode row sees ctx + 1 tokens on shuffled pages."""
    from vdeploy.layers.forward_context import AttentionMetadata

    gen = torch.Generator(device=device).manual_seed(seed)
    seq = ctx + 1
    per_seq = -(-seq // block_size)
    num_blocks = batch * per_seq
    cache = torch.randn(1, num_blocks, block_size, 1, LORA + ROPE, device=device, generator=gen).to(dtype)
    tables = torch.randperm(num_blocks, device=device, generator=gen).to(torch.int32).view(batch, per_seq)
    seq_lens = torch.full((batch,), seq, dtype=torch.int32, device=device)
    qsl = torch.arange(batch + 1, dtype=torch.int32, device=device)
    meta = AttentionMetadata(torch.zeros(batch, dtype=torch.long, device=device), qsl, seq_lens, tables, 1, seq,
                             batch, block_size, [1] * batch, [seq] * batch)
    q_lat = torch.randn(heads, batch, LORA, device=device, generator=gen).to(dtype).transpose(0, 1)  # [T, H, L]
    q_full = torch.randn(batch, heads, 128 + ROPE, device=device, generator=gen).to(dtype)
    return q_lat, q_full[..., 128:], cache, meta


def candidates(batch: int, heads: int) -> list[dict]:
    tiles = TILES if heads >= 64 else TILES_16
    out = [{"block_h": bh, "block_n": bn, "num_warps": w, "num_stages": s} for bh, bn, w, s in tiles]
    if batch <= 64:  # the KV split count matters only while rows alone do not fill the GPU
        more = [dict(out[i], grid_target=GRID_TARGET_MORE) for i in (0, 1)]
        out += [c for c in more if splits_for(c, batch, heads) != splits_for(dict(c, grid_target=264), batch, heads)]
    elif heads < 64:
        more = [dict(out[i], grid_target=g) for i in (0, 1) for g in GRID_TARGETS_16_LARGE]
        out += [c for c in more if splits_for(c, batch, heads) > 1]
    return out


def splits_for(cfg: dict, batch: int, heads: int) -> int:
    from vdeploy_kernels.mla_attention import GRID_TARGET, default_splits

    programs = -(-heads // cfg["block_h"])
    return default_splits(batch, programs, cfg.get("grid_target", GRID_TARGET))


def run(case, cfg: dict):
    from vdeploy_kernels.mla_attention import mla_attention

    q_lat, q_rope, cache, meta = case  # the kernel derives its splits from grid_target, as in the engine
    return mla_attention(q_lat, cache, meta, SCALE, LORA, tiles=cfg, q_rope=q_rope)


def _compile(task) -> str | None:
    """Worker: one launch of one config, which leaves its binary in Triton's on-disk cache; the error if any."""
    batch, ctx, heads, cfg = task
    try:
        run(make_case(batch, min(ctx, 64), heads, "cuda", torch.bfloat16, page_size()), cfg)
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - out of registers / shared memory: reported, not a candidate
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    return None


def tiny() -> None:
    """Interpreter check on CPU: L=512, R=64 at 8 heads, 2 rows over 3 pages of 16, every config and split path."""
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels.mla_attention import mla_attention

    case = make_case(2, 36, 8, "cpu", torch.float32, 16)
    q_lat, q_rope, cache, meta = case
    expected = ref.mla_attention(q_lat, cache, meta, SCALE, LORA, q_rope=q_rope)
    worst = 0.0
    for bh, bn, w, s in TILES + TILES_16:
        cfg = {"block_h": bh, "block_n": bn, "num_warps": w, "num_stages": s}
        for splits in (1, 4):
            out = mla_attention(q_lat, cache, meta, SCALE, LORA, num_splits=splits, tiles=cfg, q_rope=q_rope)
            err = (out - expected).abs().max().item()
            worst = max(worst, err)
            print(f"tiny {cfg} splits={splits}: max abs err {err:.2e}", flush=True)
            if err > 1e-4:
                raise SystemExit(f"FAIL: {cfg} splits={splits} is off the twin by {err}")
    print(f"tiny: all configs match the twin (worst max abs err {worst:.2e})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="JSON report")
    parser.add_argument("--tiny", action="store_true", help="CPU interpreter correctness check only")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out-dir", default=None, help="default: $VDEPLOY_HOME/kernel_configs/mla_decode")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--heads", type=int, default=128, help="128: R1 at TP 1; 16: DeepSeek-V2-Lite")
    args = parser.parse_args()
    if args.tiny:
        return tiny()
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels.mla_attention import KIND, config_name, decode_tiles
    from vdeploy_kernels.tuned_tables import tuned_dirs

    t0 = time.perf_counter()
    gpu = torch.cuda.get_device_name()
    block_size = page_size()
    heads = args.heads
    cases = CASES if heads >= 64 else CASES_16
    default = decode_tiles(heads)

    def key(cfg: dict, batch: int) -> tuple[str, int]:  # a binary: the tiles and the split count (a constexpr)
        tiles = {k: v for k, v in cfg.items() if k != "grid_target"}
        return json.dumps(tiles, sort_keys=True), splits_for(cfg, batch, heads)

    tasks = {}  # key -> (batch, ctx, heads, cfg): one launch per distinct binary, whatever the batch or context
    for batch, _ in cases:
        for cfg in [default] + candidates(batch, heads):
            tasks.setdefault(key(cfg, batch), (batch, 64, heads, cfg))
    with ProcessPoolExecutor(args.workers, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
        errors = dict(zip(tasks, pool.map(_compile, tasks.values())))
    print(f"compiled {len(tasks)} kernels in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, bad, best = [], [], {}
    for batch, ctx in cases:
        case = make_case(batch, ctx, heads, "cuda", torch.bfloat16, block_size, seed=batch + ctx)
        q_lat, q_rope, cache, meta = case
        expected = ref.mla_attention(q_lat.float(), cache.float(), meta, SCALE, LORA, q_rope=q_rope.float())
        flops = 2 * heads * (ctx + 1) * (LORA + ROPE + LORA) * batch
        nbytes = batch * (ctx + 1) * (LORA + ROPE) * cache.element_size()
        base_ms = None
        for cfg in [default] + [c for c in candidates(batch, heads) if c != default]:
            error = errors.get(key(cfg, batch))
            row = {"batch": batch, "context": ctx, "config": cfg, "num_splits": splits_for(cfg, batch, heads),
                   "is_default": cfg is default}
            if error:
                rows.append(dict(row, error=error))
                print(f"B={batch} ctx={ctx} {cfg}: {error}", flush=True)
                continue
            try:
                out = run(case, cfg).float()
            except Exception as exc:  # noqa: BLE001 - compiled in the worker but refused here: not a candidate
                rows.append(dict(row, error=f"{type(exc).__name__}: {str(exc)[:160]}"))
                print(f"B={batch} ctx={ctx} {cfg}: {rows[-1]['error']}", flush=True)
                continue
            max_err = (out - expected).abs().max().item()
            rel = ((out - expected).norm() / expected.norm()).item()
            ms = median_call_ms(lambda: run(case, cfg), torch.device("cuda"), args.reps)
            base_ms = base_ms or ms
            row.update(ms=ms, tflops=flops / ms / 1e9, cache_gbs=nbytes / ms / 1e6, max_abs_err=max_err,
                       rel_err=rel, speedup_vs_default=base_ms / ms)
            rows.append(row)
            flag = "  <- default" if cfg is default else ""
            print(f"B={batch:4d} ctx={ctx} {cfg} splits={row['num_splits']}: {ms:.3f} ms {row['tflops']:.0f} TFLOP/s "
                  f"{row['cache_gbs']:.0f} GB/s x{base_ms / ms:.2f} maxerr {max_err:.1e} rel {rel:.1e}{flag}",
                  flush=True)
            if rel > 2e-2 or max_err > 0.1:
                bad.append(row)
            else:
                best.setdefault(batch, {}).setdefault(json.dumps(cfg, sort_keys=True), []).append(ms / base_ms)
    table = {}
    for batch, scores in best.items():  # the config with the best mean time relative to the default over contexts
        pick = min(scores, key=lambda k: (len(scores[k]) < max(map(len, scores.values())), sum(scores[k])))
        table[str(batch)] = json.loads(pick)
        print(f"best B={batch}: {table[str(batch)]} ({sum(scores[pick]) / len(scores[pick]):.2f} of the default)")
    report = {"gpu": gpu, "page_size": block_size, "rows": rows, "table": table, "bad": bad,
              "seconds": time.perf_counter() - t0}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if bad:
        raise SystemExit(f"FAIL: {len(bad)} configs are off the twin: {[r['config'] for r in bad]}")
    out_dir = Path(args.out_dir) if args.out_dir else tuned_dirs(KIND)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / config_name(heads, LORA, ROPE, torch.bfloat16, gpu)
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s total")


if __name__ == "__main__":
    main()
