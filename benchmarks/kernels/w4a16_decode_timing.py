"""quant_gemm_check.py --w4a16-only: W4A16 decode (M ≤ 16) at the distills' layer shapes, old default against new
default against bf16, in well under 90 s of GPU time. For each layer and M: the dequantizing kernel with its old
tiles (legacy_w4a16_config), the default now (w4a16_config: the factored kernel), and a bf16 x @ Wᵀ (cuBLAS), each
timed as a CUDA graph of back-to-back calls (no launch gaps, the graph replayed several times), the int4 results
checked against the twin and the new default run twice for identical bits. Each call reads its own copy of the
weights, cycled so that a graph touches ≥ 200 MB: every call streams from HBM, as in a decode step, not from the
50 MB L2. Writes w4a16_decode.json under --out. CPU (--device cpu --tiny): the interpreter, one wall-clock call, a
smoke test of the plumbing only.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

GROUP = 128
SPAN_BYTES = 200e6  # weights one graph cycles through (4x the H100's L2)
MIN_CALLS = 20


def graph_us(calls, reps: int = 5) -> float:
    """µs per call: `calls` captured back to back in one CUDA graph, replayed `reps` times (median replay)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up: compiles, allocator pools, the split-K counters
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    del graph
    return sorted(times)[len(times) // 2]


def _wall_us(calls) -> float:
    start = time.perf_counter()
    calls[0]()
    return (time.perf_counter() - start) * 1e6


def weight_copies(nbytes: int, cuda: bool) -> int:
    return max(1, math.ceil(SPAN_BYTES / nbytes)) if cuda else 1


def _timing_setup(device: str):
    """(cuda, SM count, timer, generator) for a timing run on `device`."""
    import torch

    cuda = device == "cuda"
    sms = torch.cuda.get_device_properties(device).multi_processor_count if cuda else 4
    return cuda, sms, graph_us if cuda else _wall_us, torch.Generator(device=device).manual_seed(0)


def _w4_copies(n: int, k: int, device: str, gen, cuda: bool) -> tuple[list, int]:
    """Enough copies of one random 4-bit [K, N] weight (qweight, scales, zeros, g_idx) that calls cycling through
    them stream from HBM, and the bytes of one copy."""
    from quant_gemm_check import make_w4

    w4 = [make_w4(n, k, device, False, gen)]
    nbytes = w4[0][0].numel() * 4 + w4[0][1].numel() * 2 + w4[0][2].numel() * 2
    return w4 + [tuple(t.clone() for t in w4[0]) for _ in range(weight_copies(nbytes, cuda) - 1)], nbytes


def run(models: dict, ms: list[int], device: str, dtype, out_dir: str, git_rev: str, budget_s: float) -> dict:
    import torch

    from quant_gemm_check import rel_err
    from vdeploy_kernels import reference_quant as ref
    from vdeploy_kernels.w4a16_gemm import legacy_w4a16_config, w4a16_config, w4a16_matmul

    cuda, sms, timer, gen = _timing_setup(device)
    deadline = time.monotonic() + budget_s
    rows, cut = [], False
    for model, shapes in models.items():
        for layer, (n, k) in shapes.items():
            if time.monotonic() > deadline:
                cut = True
                break
            w4, w4_bytes = _w4_copies(n, k, device, gen, cuda)
            dense = [torch.randn(n, k, generator=gen, device=device).to(dtype)
                     for _ in range(weight_copies(n * k * 2, cuda))]  # the bf16 weight it replaces, [N, K]
            for m in ms:
                x = torch.randn(m, k, generator=gen, device=device).to(dtype)
                old, new = legacy_w4a16_config(m, n, k, GROUP, sms), w4a16_config(m, n, k, GROUP, sms)
                twin = ref.w4a16_matmul(x, *w4[0])
                out_new = w4a16_matmul(x, *w4[0], GROUP, config=new)
                err_old = rel_err(w4a16_matmul(x, *w4[0], GROUP, config=old), twin)
                err_new = rel_err(out_new, twin)
                same = bool(torch.equal(out_new, w4a16_matmul(x, *w4[0], GROUP, config=new)))

                def calls(cfg, count):
                    return [lambda w=w4[i % len(w4)]: w4a16_matmul(x, *w, GROUP, config=cfg) for i in range(count)]

                count = max(MIN_CALLS, len(w4), len(dense)) if cuda else 1
                old_us, new_us = timer(calls(old, count)), timer(calls(new, count))
                bf16_us = timer([lambda w=dense[i % len(dense)]: x @ w.t() for i in range(count)])
                ok = err_old < 1e-2 and err_new < 1e-2 and same
                rows.append({"model": model, "layer": layer, "n": n, "k": k, "m": m, "old_config": old,
                             "new_config": new, "old_us": old_us, "new_us": new_us, "bf16_us": bf16_us,
                             "new_vs_bf16": bf16_us / new_us, "old_vs_bf16": bf16_us / old_us,
                             "new_vs_old": old_us / new_us, "rel_err_old": err_old, "rel_err_new": err_new,
                             "deterministic": same, "weight_bytes": w4_bytes,
                             "new_weight_TBps": w4_bytes / new_us * 1e-6, "weight_copies": len(w4), "ok": ok})
                print(f"{model:20s} {layer:8s} M={m:3d}  old {old_us:8.1f} us  new {new_us:8.1f} us  "
                      f"bf16 {bf16_us:8.1f} us  new/bf16 x{bf16_us / new_us:.2f}  new/old x{old_us / new_us:.2f}  "
                      f"{w4_bytes / new_us * 1e-6:.2f} TB/s  err {err_new:.1e}  {'ok' if ok else 'FAIL'}", flush=True)
            w4 = dense = None  # free the copies before the next layer
    name = torch.cuda.get_device_name() if cuda else "CPU (Triton interpreter)"
    report = {"benchmark": "w4a16_decode", "git_revision": git_rev, "device": name,
              "dtype": str(dtype).removeprefix("torch."), "group_size": GROUP, "ms": ms,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timing": "cuda graph" if cuda else "wall",
              "ok": bool(rows) and all(r["ok"] for r in rows), "cut_short": cut, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "w4a16_decode.json").write_text(json.dumps(report, indent=1))
    print("all ok" if report["ok"] else "check(s) FAILED or nothing ran")
    return report


# (BN, warps, BK, stages): the shipped M = 1 tile first; then fewer columns per thread (BN / (32 warps)), so that a
# program's serial work shrinks and more warps share an SM (latency-bound small layers), and longer K tiles
FACTORED_TILES = ((256, 1, 64, 3), (256, 1, 64, 2), (128, 1, 64, 3), (128, 1, 64, 2), (64, 1, 64, 2),
                  (256, 2, 64, 2), (256, 4, 64, 2), (512, 4, 64, 2), (128, 1, 128, 2), (256, 1, 128, 2),
                  (128, 1, 64, 4), (256, 2, 64, 3))
# (BN, warps, BK, stages) of the tensor-core variant (`dot: True`, 16-row tiles), where the CUDA-core tiles of 4 rows
# only tied the dequantizing kernel at 8 rows (2026-12-07d lease 3) and would do worse at 16. Tried at 1-4 rows too
# (first there: new candidates): its decode is ~1 bit operation a weight where the CUDA-core path spends ~4, and at
# batch 1 those instructions, not the bytes, cap the CUDA-core kernel near half the bandwidth
DOT_TILES = ((64, 4, 64, 3), (128, 4, 64, 3), (128, 4, 128, 3), (256, 8, 64, 3), (128, 8, 64, 4))
WARPS_PER_SM = (8, 16, 32)  # factored_split's target occupancy (8: the shipped choice)
# splits past factored_split's cap of 32, for narrow layers with a long K (the 7B's down, N 3584 x K 18944, best at
# the cap in the 2026-12-07c sweep: 25.3 us, 1.42 TB/s against gate_up's 2.17)
EXTRA_SPLITS = (48, 64)
TABLE_WIN = 1.05  # a shape gets a table row (tables/w4a16/ under --out) where its best tile is this much faster


def factored_tiles(m: int, cuda: bool) -> list[dict]:
    """The factored kernel's tiles tried at M rows: FACTORED_TILES for 1-2 rows; for 3-8, the tiles whose per-row
    accumulators fit (≤ 256 columns a program, ≤ 128 a warp), each program taking 4 rows (M-tiles of 4 beyond);
    and DOT_TILES (tensor cores, M padded to 16), at 1-4 rows ahead of the CUDA-core tiles."""
    fma = FACTORED_TILES if m <= 2 else tuple(t for t in FACTORED_TILES + ((128, 1, 32, 3),)
                                               if t[0] <= 256 and t[0] // t[1] <= 128) if m <= 8 else ()
    fma_tiles = [dict(dot=False, block_m=min(4, 1 << (m - 1).bit_length()), block_n=bn, num_warps=w, block_k=bk,
                      num_stages=s) for bn, w, bk, s in fma]
    dot_tiles = [dict(dot=True, block_m=16, block_n=bn, num_warps=w, block_k=bk, num_stages=s)
                 for bn, w, bk, s in DOT_TILES]
    tiles = dot_tiles + fma_tiles if m <= 4 else fma_tiles + dot_tiles
    return tiles if cuda else fma_tiles[:2] + dot_tiles[:1]


def sweep_factored(models: dict, device: str, dtype, out_dir: str, git_rev: str, budget_s: float,
                   ms: tuple[int, ...] = (1,)) -> dict:
    """Each M of `ms`: the engine's config now (its table row, else the heuristic) first, then every factored_tiles
    tile at each WARPS_PER_SM split (and EXTRA_SPLITS), and for M > 2 the dequantizing kernel's tiles, as CUDA graphs
    over weight copies cycled past the L2 (as run() times the defaults), each output checked against the twin.
    Writes w4a16_factored_sweep.json, and tables/w4a16/<shape>.json — the shipped table with a row replaced or
    added for each M whose best config beats the engine's by TABLE_WIN (copy them to kernels/configs/w4a16/)."""
    import torch

    from quant_gemm_check import rel_err
    from vdeploy_kernels import reference_quant as ref
    from vdeploy_kernels.tuned_tables import write_merged_table
    from vdeploy_kernels.w4a16_configs import KIND, config_name, tuned_w4a16_config
    from vdeploy_kernels.w4a16_gemm import factored_split, legacy_w4a16_config, w4a16_config, w4a16_matmul

    cuda, sms, timer, gen = _timing_setup(device)
    gpu = torch.cuda.get_device_name() if cuda else None
    deadline = time.monotonic() + budget_s
    rows, cut, new_rows = [], False, {}
    for model, shapes in models.items():
        for layer, (n, k) in shapes.items():
            w4, w4_bytes = _w4_copies(n, k, device, gen, cuda)
            count = max(MIN_CALLS, len(w4)) if cuda else 1
            for m in ms:
                x = torch.randn(m, k, generator=gen, device=device).to(dtype)
                twin = ref.w4a16_matmul(x, *w4[0])
                engine = (cuda and tuned_w4a16_config(m, n, k, GROUP, gpu)) or w4a16_config(m, n, k, GROUP, sms)
                configs = [engine]
                for tile in factored_tiles(m, cuda):
                    base = dict(factored=True, **tile)
                    deep = {s for s in EXTRA_SPLITS if s <= -(-k // tile["block_k"]) // 2}  # past the cap (long K)
                    configs += [dict(base, split_k=s) for s in
                                sorted({factored_split(m, n, k, base, sms, w) for w in WARPS_PER_SM} | deep)]
                if m > 2:
                    configs.append(legacy_w4a16_config(m, n, k, GROUP, sms))
                tried = []
                for cfg in configs:
                    if time.monotonic() > deadline:
                        cut = True
                        break
                    try:
                        err = rel_err(w4a16_matmul(x, *w4[0], GROUP, config=cfg), twin)
                        us = timer([lambda w=w4[i % len(w4)]: w4a16_matmul(x, *w, GROUP, config=cfg)
                                    for i in range(count)]) if err < 1e-2 else None
                    except Exception as e:  # noqa: BLE001 - a config that does not compile or fit is no candidate
                        tried.append({"config": cfg, "error": repr(e)[:200], "us": None})
                        continue
                    tried.append({"config": cfg, "rel_err": err, "us": us,
                                  "TBps": w4_bytes / us * 1e-6 if us else None})
                timed = [t for t in tried if t["us"]]
                best = min(timed, key=lambda t: t["us"]) if timed else None
                default_us = tried[0]["us"] if tried else None
                rows.append({"model": model, "layer": layer, "n": n, "k": k, "m": m, "weight_bytes": w4_bytes,
                             "default_us": default_us, "best": best, "tried": tried})
                if cuda and best and default_us and default_us / best["us"] >= TABLE_WIN:
                    new_rows.setdefault((n, k), {})[str(m)] = best["config"]
                if best:
                    keys = ("factored", "dot", "block_m", "block_n", "num_warps", "block_k", "num_stages", "split_k")
                    shown = {k: v for k, v in best["config"].items() if k in keys}
                    print(f"{model:20s} {layer:8s} M={m:2d} engine {default_us or float('nan'):7.1f} us  best "
                          f"{best['us']:7.1f} us ({best['TBps']:.2f} TB/s) {json.dumps(shown)}", flush=True)
            w4 = None  # free the copies before the next layer
    for (n, k), table_rows in new_rows.items():
        write_merged_table(KIND, config_name(n, k, GROUP, gpu), table_rows, Path(out_dir) / "tables")
    name = torch.cuda.get_device_name() if cuda else "CPU (Triton interpreter)"
    report = {"benchmark": "w4a16_factored_sweep", "git_revision": git_rev, "device": name,
              "dtype": str(dtype).removeprefix("torch."), "group_size": GROUP, "ms": list(ms),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cut_short": cut, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "w4a16_factored_sweep.json").write_text(json.dumps(report, indent=1))
    return report
