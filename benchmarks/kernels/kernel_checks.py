"""Correctness grid of every Triton kernel against its torch twin (used by check_and_bench.py).

Each check draws fresh random inputs, compares by relative Frobenius error ‖out − ref‖ / ‖ref‖ and records one
row: {"kernel", "case", "rel_err", "tol", "ok"}. A non-finite output counts as an infinite error, and attention
is judged per request (the worst one), so a row the kernel never wrote (uninitialised memory) cannot hide.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import torch

from vdeploy_kernels import reference
from vdeploy_kernels.activation import silu_and_mul
from vdeploy_kernels.norms import rms_norm
from vdeploy_kernels.paged_attention import paged_attention
from vdeploy_kernels.paged_batch import make_metadata, make_paged_batch
from vdeploy_kernels.rotary import rotary
from vdeploy_kernels.store_kv import store_kv

BF16_TOL = 1e-2  # bf16 operands: errors land between 1e-3 and 1e-2


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def _row(kernel: str, case: str, err: float, tol: float) -> dict:
    return {"kernel": kernel, "case": case, "rel_err": err, "tol": tol, "ok": err < tol}


def attention_grid(device: str, quick: bool) -> list[dict]:
    """Head dims 64/128 x GQA 1/4/8 x page sizes 16/32/64, each a mixed batch of decodes (contexts up to 32k)
    and prefills (fresh, extend over a prefix, a chunk after a 32k prefix)."""
    if quick:
        q_lens, seq_lens, kv_heads = [1, 1, 1, 20, 9], [1, 17, 70, 20, 45], 2
    else:
        q_lens, seq_lens, kv_heads = [1, 1, 1, 1, 100, 700, 256], [1, 17, 1000, 32768, 4000, 700, 32768], 4
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    # the interpreter's tl.dot mishandles bf16 operands, so the CPU run of this script checks fp16 there
    dtype, name = (torch.bfloat16, "bf16") if device == "cuda" else (torch.float16, "fp16")
    for head_dim, group, page in itertools.product([64, 128], [1, 4, 8], [16, 32, 64]):
        b = make_paged_batch(q_lens, seq_lens, num_heads=kv_heads * group, num_kv_heads=kv_heads,
                             head_dim=head_dim, block_size=page, dtype=dtype, device=device,
                             generator=gen)
        out = paged_attention(b.q, b.kv_cache, b.meta, head_dim**-0.5)
        ref = reference.paged_attention(b.q, b.kv_cache, b.meta, head_dim**-0.5)
        starts = b.meta.query_start_loc.tolist()
        # worst request, so a wrong short request cannot hide behind a long correct one
        err = max(rel_err(out[s:e], ref[s:e]) for s, e in zip(starts[:-1], starts[1:]))
        rows.append(_row("paged_attention", f"{name} D={head_dim} G={group} BS={page} mixed", err, BF16_TOL))
    # fp16 and an MLA-like single-component cache with non-power-of-two dims (D=576, Dv=512)
    b = make_paged_batch(q_lens, seq_lens, num_heads=8, num_kv_heads=2, head_dim=128, block_size=16,
                         dtype=torch.float16, device=device, generator=gen)
    err = rel_err(paged_attention(b.q, b.kv_cache, b.meta, 0.088), reference.paged_attention(b.q, b.kv_cache,
                                                                                               b.meta, 0.088))
    rows.append(_row("paged_attention", "fp16 D=128 G=4 BS=16 mixed", err, 2e-3))
    for q_len in (40, 100):  # short queries take the smaller prefill configs
        b = make_paged_batch([1, q_len, q_len], [9, q_len + 5000, q_len], num_heads=16, num_kv_heads=4,
                             head_dim=128, block_size=16, dtype=dtype, device=device, generator=gen)
        err = rel_err(paged_attention(b.q, b.kv_cache, b.meta, 0.088),
                      reference.paged_attention(b.q, b.kv_cache, b.meta, 0.088))
        rows.append(_row("paged_attention", f"{name} D=128 G=4 BS=16 short extends q_len={q_len}", err, BF16_TOL))
    mla_lens = ([1, 1, 30], [5, 60, 80]) if quick else ([1, 1, 1, 300], [5, 600, 8000, 2000])
    b = make_paged_batch(*mla_lens, num_heads=16, num_kv_heads=1, head_dim=576, block_size=64,
                         dtype=dtype, device=device, num_components=1, generator=gen)
    err = rel_err(paged_attention(b.q, b.kv_cache, b.meta, 0.07, v_head_dim=512),
                  reference.paged_attention(b.q, b.kv_cache, b.meta, 0.07, v_head_dim=512))
    rows.append(_row("paged_attention", f"{name} MLA-like K=1 D=576 Dv=512 G=16 BS=64", err, BF16_TOL))
    return rows


def decode_graph_check(device: str, quick: bool) -> list[dict]:
    """Capture decode attention in a CUDA graph, then replay it with other context lengths and block tables."""
    if device != "cuda":
        return []
    batch, page, heads, kv_heads, dim = 8, 16, 32, 8, 128
    max_ctx = 300 if quick else 20000
    gen = torch.Generator(device=device).manual_seed(1)
    num_blocks = batch * (max_ctx // page + 1) + 4
    cache = torch.randn(2, num_blocks, page, kv_heads, dim, generator=gen, device=device, dtype=torch.bfloat16)
    q = torch.randn(batch, heads, dim, generator=gen, device=device, dtype=torch.bfloat16)

    def meta_for(lens):  # seq_len 0 marks a graph padding row: give it a page, then zero its length on device
        meta = make_metadata([1] * batch, [max(n, 1) for n in lens], page, num_blocks, device, gen)
        meta.seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
        meta.seq_lens_host = list(lens)
        return meta

    static = meta_for([max_ctx] * batch)
    static.block_tables = torch.zeros(batch, max_ctx // page + 1, dtype=torch.int32, device=device)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        paged_attention(q, cache, static, 0.088)  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = paged_attention(q, cache, static, 0.088)
    rows = []
    for trial, lens in enumerate([[max_ctx] * batch, [1, 2, 15, 16, 17, 1000 % max_ctx, max_ctx - 1, 33],
                                  [0, 5, 0, 64, 129, 7, 300, 1]]):
        m = meta_for(lens)
        static.seq_lens.copy_(m.seq_lens)
        static.block_tables.zero_()
        static.block_tables[:, : m.block_tables.shape[1]].copy_(m.block_tables)
        q.copy_(torch.randn(q.shape, generator=gen, device=device, dtype=q.dtype))
        graph.replay()
        live = [i for i, n in enumerate(lens) if n > 0]
        ref = reference.paged_attention(q[live], cache, _subset(m, live), 0.088)
        err = rel_err(out[live], ref)
        zeros_ok = all(out[i].abs().max().item() == 0 for i, n in enumerate(lens) if n == 0)
        rows.append(_row("paged_attention", f"decode CUDA-graph replay {trial} (padding rows zero: {zeros_ok})",
                         err if zeros_ok else float("inf"), BF16_TOL))
    return rows


def _subset(meta, idx: list[int]):
    """The decode requests idx of meta, as their own batch."""
    device = meta.seq_lens.device
    return replace(
        meta, slot_mapping=meta.slot_mapping[idx], seq_lens=meta.seq_lens[idx], block_tables=meta.block_tables[idx],
        query_start_loc=torch.arange(len(idx) + 1, dtype=torch.int32, device=device), num_decodes=len(idx),
        query_lens_host=[1] * len(idx), seq_lens_host=[meta.seq_lens_host[i] for i in idx],
        max_seq_len=max(meta.seq_lens_host[i] for i in idx),
    )


def elementwise_checks(device: str, quick: bool) -> list[dict]:
    rows = []
    tokens = 7 if quick else 4099
    gen = torch.Generator(device=device).manual_seed(2)

    def randn(*shape, dtype=torch.bfloat16):
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    for hidden in ([64, 96] if quick else [4096, 7168, 3584]):
        x, res, w = randn(tokens, hidden), randn(tokens, hidden), randn(hidden)
        normed, new_res = rms_norm(x, w, 1e-6, res)
        ref_normed, ref_res = reference.rms_norm(x, w, 1e-6, res)
        rows.append(_row("rms_norm", f"bf16 T={tokens} D={hidden} +residual", rel_err(normed, ref_normed), 1e-2))
        exact = torch.equal(new_res, ref_res) or device != "cuda"  # the interpreter truncates to bf16
        rows.append(_row("rms_norm", f"bf16 T={tokens} D={hidden} residual sum exact", 0.0 if exact else 1.0, 0.5))
        rows.append(_row("rms_norm", f"bf16 T={tokens} D={hidden}",
                         rel_err(rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6)), 1e-2))
    for inter in ([64, 100] if quick else [14336, 18944, 2048]):
        x = randn(tokens, 2 * inter)
        rows.append(_row("silu_and_mul", f"bf16 T={tokens} I={inter}",
                         rel_err(silu_and_mul(x), reference.silu_and_mul(x)), 1e-2))
    for heads, kv_heads, rot in ([(4, 2, 64)] if quick else [(32, 8, 128), (28, 4, 128), (16, 16, 64)]):
        inv = 1.0 / (10000 ** (torch.arange(0, rot, 2, device=device).float() / rot))
        freqs = torch.outer(torch.arange(4096 if not quick else 64, device=device).float(), inv)
        cache = torch.cat((freqs.cos(), freqs.sin()), -1)
        q, k = randn(tokens, heads, rot), randn(tokens, kv_heads, rot)
        pos = torch.randint(0, cache.shape[0], (tokens,), generator=gen, device=device)
        (qo, ko), (qr, kr) = rotary(q, k, pos, cache), reference.rotary(q, k, pos, cache)
        rows.append(_row("rotary", f"bf16 T={tokens} H={heads}/{kv_heads} Dr={rot}",
                         max(rel_err(qo, qr), rel_err(ko, kr)), 1e-2))
    for kv_heads, dim, page in ([(2, 64, 16)] if quick else [(8, 128, 16), (4, 64, 32), (1, 576, 64)]):
        comps = 1 if dim == 576 else 2
        cache = randn(comps, tokens // page + 8, page, kv_heads, dim)
        expected = cache.clone()
        k = randn(tokens, kv_heads, dim)
        v = randn(tokens, kv_heads, dim) if comps == 2 else None
        slots = torch.randperm(cache.shape[1] * page, generator=gen, device=device)[:tokens]
        slots[::5] = -1
        store_kv(k, v, cache, slots)
        reference.store_kv(k, v, expected, slots)
        rows.append(_row("store_kv", f"bf16 T={tokens} Hk={kv_heads} D={dim} BS={page} K={comps}",
                         0.0 if torch.equal(cache, expected) else 1.0, 0.5))
    return rows


def run_all_checks(device: str, quick: bool) -> list[dict]:
    rows = []
    for check in (attention_grid, decode_graph_check, elementwise_checks):
        try:
            rows += check(device, quick)
        except Exception as exc:  # one broken family must not hide the others' results
            rows.append({"kernel": check.__name__, "case": f"raised {type(exc).__name__}: {exc}"[:500],
                         "rel_err": float("inf"), "tol": 0.0, "ok": False})
    return rows
