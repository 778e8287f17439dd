"""Micro-benchmarks of the Triton kernels (used by check_and_bench.py).

Ceilings are measured in the same run: device-to-device copy bandwidth (bytes read + written) and a large bf16
matrix product. Decode attention is timed inside CUDA graphs that replay R calls over R different page sets
(R sized so the set is far larger than L2), so the numbers are kernel time, not launch gaps or cache hits.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from vdeploy_kernels import reference
from vdeploy_kernels.activation import silu_and_mul
from vdeploy_kernels.decode_attention import DecodeConfig, default_decode_config
from vdeploy_kernels.norms import rms_norm
from vdeploy_kernels.paged_attention import paged_attention
from vdeploy_kernels.paged_batch import make_metadata, make_paged_batch
from vdeploy_kernels.prefill_attention import PrefillConfig, default_prefill_config
from vdeploy_kernels.rotary import rotary
from vdeploy_kernels.store_kv import store_kv

LLAMA8B = {"num_heads": 32, "num_kv_heads": 8, "head_dim": 128}
TINY = {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64}  # --quick: the interpreter runs each program in Python
ROTATION_BYTES = 1 << 30  # each timed graph touches at least this much distinct KV (L2 is ~50 MB)


def time_ms(fn, device: str) -> float:
    """Median milliseconds of fn (CUDA: triton's event-based do_bench; CPU: a few wall-clock runs)."""
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=150, return_mode="median")
    fn()
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return sorted(runs)[1]


def copy_bandwidth(device: str, quick: bool) -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read plus bytes written."""
    n = (1 << 20) if quick else (1 << 30)  # bf16 elements: 2 GiB on the GPU
    src = torch.randn(n, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def matmul_flops(device: str, quick: bool) -> float:
    n = 256 if quick else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, device)
    return 2 * n**3 / (ms * 1e-3)


class DecodePool:
    """One big KV pool; every timed batch draws its pages from it at random."""

    def __init__(self, device: str, max_tokens: int, shape: dict):
        self.device, self.shape = device, shape
        gen = torch.Generator(device=device).manual_seed(3)
        self.flat = torch.randn(2, max_tokens, shape["num_kv_heads"], shape["head_dim"], generator=gen,
                                device=device, dtype=torch.bfloat16)  # [2, tokens, Hk, D]
        self.gen = gen

    def cache(self, page: int) -> torch.Tensor:  # [2, NB, BS, Hk, D] view of the same memory
        return self.flat.view(2, -1, page, *self.flat.shape[2:])

    def kv_bytes(self, batch: int, ctx: int) -> int:
        return 2 * batch * ctx * self.shape["num_kv_heads"] * self.shape["head_dim"] * 2

    def time_decode(self, batch: int, ctx: int, page: int, config: DecodeConfig | None = None) -> dict:
        cache = self.cache(page)
        heads, dim = self.shape["num_heads"], self.shape["head_dim"]
        case_bytes = self.kv_bytes(batch, ctx)
        reps = max(1, min(64, -(-ROTATION_BYTES // case_bytes))) if self.device == "cuda" else 1
        metas = [make_metadata([1] * batch, [ctx] * batch, page, cache.shape[1], self.device, self.gen)
                 for _ in range(reps)]
        qs = [torch.randn(batch, heads, dim, generator=self.gen, device=self.device, dtype=torch.bfloat16)
              for _ in range(reps)]

        def run_all():
            for q, m in zip(qs, metas):
                paged_attention(q, cache, m, dim**-0.5, decode_config=config)

        if self.device == "cuda":
            run_all()  # compile before capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run_all()
            ms = time_ms(graph.replay, self.device) / reps
        else:
            ms = time_ms(run_all, self.device) / reps
        total = case_bytes + 2 * batch * heads * dim * 2  # KV read + q read + out written
        cfg = config or default_decode_config(batch, self.shape["num_kv_heads"], dim, torch.device(self.device))
        return {"batch": batch, "context": ctx, "page": page, "us": ms * 1e3, "bytes": total,
                "bandwidth": total / (ms * 1e-3), "config": cfg.__dict__}


def decode_benchmarks(device: str, quick: bool, copy_bw: float, sweeps: bool = True) -> dict:
    batches, contexts = ([1, 4], [64, 256]) if quick else ([1, 32, 256], [1024, 8192, 32768])
    shape = TINY if quick else LLAMA8B
    pool = DecodePool(device, max(batches) * max(contexts) + 64 * 64, shape)
    grid = [pool.time_decode(b, c, 16) for b in batches for c in contexts]
    for row in grid:
        row["fraction_of_copy"] = row["bandwidth"] / copy_bw
    # launch-config sweep on the points the target is about (batch >= 32) and one long single stream
    sweep_points = [] if not sweeps else [(4, 256)] if quick else [(32, 8192), (256, 1024), (1, 32768)]
    sweep = []
    dev = torch.device(device)
    for batch, ctx in sweep_points:
        base = default_decode_config(batch, shape["num_kv_heads"], shape["head_dim"], dev)
        variants = {(bn, 4, s) for bn in (64, 128) for s in (2, 3, 4)} if not quick else {(16, 4, 1), (32, 4, 1)}
        for bn, w, s in sorted(variants):
            cfg = replace(base, block_n=bn, num_warps=w, num_stages=s)
            sweep.append(_safe(lambda: pool.time_decode(batch, ctx, 16, cfg)))
        for factor in (0.5, 2, 4):
            cfg = replace(base, num_splits=max(1, int(base.num_splits * factor)))
            sweep.append(_safe(lambda: pool.time_decode(batch, ctx, 16, cfg)))
    pages = [_safe(lambda: pool.time_decode(b, c, p)) for p in (16, 32, 64)
             for b, c in ([(4, 256)] if quick else [(32, 8192), (256, 1024), (1, 32768)])]
    for row in sweep + pages:
        if "bandwidth" in row:
            row["fraction_of_copy"] = row["bandwidth"] / copy_bw
    return {"grid": grid, "config_sweep": sweep, "page_sizes": pages}


def _safe(fn) -> dict:
    try:
        return fn()
    except Exception as exc:  # an over-sized config (shared memory) is a result, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def _causal_flops(q_lens: list[int], seq_lens: list[int], heads: int, dim: int) -> float:
    """QK^T and PV: 4 * D flops per (head, query, visible key)."""
    pairs = sum(q * (s - q) + q * (q + 1) // 2 for q, s in zip(q_lens, seq_lens))
    return 4.0 * dim * heads * pairs


def time_prefill(device: str, q_lens, seq_lens, shape: dict, page: int, config: PrefillConfig | None) -> dict:
    gen = torch.Generator(device=device).manual_seed(4)
    b = make_paged_batch(q_lens, seq_lens, block_size=page, dtype=torch.bfloat16, device=device, generator=gen,
                         **shape)
    ms = time_ms(lambda: paged_attention(b.q, b.kv_cache, b.meta, shape["head_dim"] ** -0.5,
                                         prefill_config=config), device)
    flops = _causal_flops(q_lens, seq_lens, shape["num_heads"], shape["head_dim"])
    cfg = config or default_prefill_config(shape["head_dim"], torch.device(device), max(q_lens))
    return {"q_lens": f"{len(q_lens)}x{q_lens[0]}", "context": seq_lens[0], "page": page,
            "head_dim": shape["head_dim"], "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12, "config": cfg.__dict__}


def prefill_benchmarks(device: str, quick: bool, peak_flops: float, sweeps: bool = True) -> dict:
    n, q, prefix = (2, 64, 32) if quick else (8, 4096, 8192)
    shapes = {"D128": LLAMA8B, "D64": {"num_heads": 32, "num_kv_heads": 8, "head_dim": 64}}
    if quick:
        shapes = {"tiny": TINY}
    main = []
    for name, shape in shapes.items():
        main.append(time_prefill(device, [q] * n, [q] * n, shape, 16, None))  # fresh prompts
        main.append(time_prefill(device, [q // 8] * n, [q // 8 + prefix] * n, shape, 16, None))  # extend
    configs = [(128, 64, 8, 3), (256, 64, 8, 3), (256, 64, 8, 2), (256, 32, 8, 3), (256, 128, 8, 2),
               (128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 4, 3), (64, 64, 4, 3), (64, 128, 4, 4),
               (256, 64, 16, 3)]
    if quick:
        configs = [(16, 16, 4, 1), (32, 32, 4, 1)]
    if not sweeps:
        configs = []
    big = TINY if quick else LLAMA8B
    workloads = [([q] * n, [q] * n, big), ([q // 8] * n, [q // 8 + prefix] * n, big)]
    if not quick:
        workloads.append(([q] * n, [q] * n, shapes["D64"]))
    sweep = [_safe(lambda: time_prefill(device, ql, sl, shape, 16, PrefillConfig(*c)))
             for ql, sl, shape in workloads for c in configs]
    pages = [_safe(lambda: time_prefill(device, [q] * n, [q] * n, big, p, None)) for p in (16, 32, 64)]
    for row in main + sweep + pages:
        if "tflops" in row:
            row["fraction_of_matmul_peak"] = row["tflops"] * 1e12 / peak_flops
    return {"main": main, "config_sweep": sweep, "page_sizes": pages}


def elementwise_benchmarks(device: str, quick: bool, copy_bw: float) -> list[dict]:
    """Triton kernel vs its torch twin (eager) at prefill-sized batches; bandwidth = compulsory bytes / time."""
    tokens = 64 if quick else 8192
    hidden, inter, heads, kv_heads, dim = (64, 128, 4, 2, 64) if quick else (4096, 14336, 32, 8, 128)
    gen = torch.Generator(device=device).manual_seed(5)

    def rnd(*s):
        return torch.randn(s, generator=gen, device=device, dtype=torch.bfloat16)

    x, res, w = rnd(tokens, hidden), rnd(tokens, hidden), rnd(hidden)
    gate_up = rnd(tokens, 2 * inter)
    q, k = rnd(tokens, heads, dim), rnd(tokens, kv_heads, dim)
    cos_sin = torch.randn(65536 if not quick else 256, dim, generator=gen, device=device)
    pos = torch.randint(0, cos_sin.shape[0], (tokens,), generator=gen, device=device)
    cache = rnd(2, tokens // 16 + 1, 16, kv_heads, dim)
    slots = torch.randperm(tokens, generator=gen, device=device)
    e = 2  # bf16 bytes
    cases = [
        ("rms_norm+residual", lambda m: m.rms_norm(x, w, 1e-6, res), 4 * tokens * hidden * e),
        ("rms_norm", lambda m: m.rms_norm(x, w, 1e-6), 2 * tokens * hidden * e),
        ("silu_and_mul", lambda m: m.silu_and_mul(gate_up), 3 * tokens * inter * e),
        ("rotary", lambda m: m.rotary(q, k, pos, cos_sin), 2 * tokens * (heads + kv_heads) * dim * e),
        ("store_kv", lambda m: m.store_kv(k, k, cache, slots), 4 * tokens * kv_heads * dim * e),
    ]
    triton_impl = _Namespace(rms_norm=rms_norm, silu_and_mul=silu_and_mul, rotary=rotary, store_kv=store_kv)
    rows = []
    for name, call, nbytes in cases:
        t_triton = time_ms(lambda: call(triton_impl), device)
        t_torch = time_ms(lambda: call(reference), device)
        rows.append({"kernel": name, "tokens": tokens, "triton_us": t_triton * 1e3, "torch_twin_us": t_torch * 1e3,
                     "bandwidth": nbytes / (t_triton * 1e-3), "fraction_of_copy": nbytes / (t_triton * 1e-3) / copy_bw})
    return rows


class _Namespace:
    def __init__(self, **fns):
        self.__dict__.update(fns)
