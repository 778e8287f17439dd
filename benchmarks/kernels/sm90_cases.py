"""The kernel cases sm90_compile_check.py compiles for Hopper, one generator per group: each yields (name, config,
call), where call runs a kernel's own Python wrapper on CPU tensors of the real shapes and strides (the checker has
made every launch a compile-only warm-up). Which kernels and shapes each group covers: sm90_compile_check.py's
docstring."""

from __future__ import annotations

from pathlib import Path

import torch


def fresh_cases():
    from dataclasses import asdict

    from benchmarks.kernels.prefill_attention_sweep import NEW_FRESH_CONFIGS, SHIPPED_FRESH, describe
    from vdeploy_kernels.fresh_prefill_attention import FreshPrefillConfig, fresh_prefill_attention
    from vdeploy_kernels.paged_batch import make_metadata

    h, hk, d, lens = 32, 8, 128, [4096, 4096]
    rows = sum(lens)
    fused = torch.empty(rows, (h + 2 * hk) * d, dtype=torch.bfloat16)  # q, k, v: views of one projection
    q, k, v = (fused[:, : h * d].view(rows, h, d), fused[:, h * d : (h + hk) * d].view(rows, hk, d),
               fused[:, (h + hk) * d :].view(rows, hk, d))
    meta = make_metadata(lens, lens, 16, 2 * rows // 16, "cpu")
    out = torch.empty(rows, h, d, dtype=torch.bfloat16)
    for fields in [SHIPPED_FRESH] + NEW_FRESH_CONFIGS:
        cfg = FreshPrefillConfig(**fields)
        yield f"fresh {describe(cfg)}", asdict(cfg), (lambda c=cfg: fresh_prefill_attention(
            q, k, v, out, meta.query_start_loc, meta.seq_lens, 0, len(lens), max(lens), d**-0.5, c))


# rope_store_kv shapes: (label, query heads, KV heads, head dim, every variant or a few). The launch specialises on
# the head counts (BLOCK_QH = min(8, next_pow2(H)), BLOCK_KH = next_pow2(Hk)) and the head dim, so a shape that
# compiles says little about another: Llama-8B's 32 / 8 gives 8-head blocks on both sides, the tiny test models'
# 4 / 2 did not (a variable reshaped across the runtime query / key branch failed there on Triton 3.6).
ROPE_SHAPES = (("Llama-8B", 32, 8, 128, True),
               ("tiny GPU worker Llama", 4, 2, 64, True),  # tests/worker/test_model_runner_cuda_worker.py
               ("tiny quant / fp8-KV models", 4, 2, 16, True),  # tests/models/quant_testlib.py, test_fp8_kv_cache.py
               ("tiny engine models", 6, 3, 16, False),  # tests/engine (hidden 96): non-power-of-two head counts
               ("worker checkpoints", 8, 4, 8, False),  # tests/worker/worker_checkpoints.py defaults
               ("MHA", 4, 4, 64, False), ("GQA 4", 8, 2, 64, False), ("MQA", 4, 1, 32, False),
               ("one head", 1, 1, 128, False), ("GQA 8", 16, 2, 128, False))


def rope_variants(d: int, every: bool):
    """(cache dtype, rotary dim, interleaved, keep k): all twelve, or a few covering each feature once."""
    rotaries = ((d, False), (d // 2, False), (d, True))  # full, partial, interleaved
    full = [(c, r, i, kk) for c in (torch.bfloat16, torch.float8_e4m3fn) for r, i in rotaries for kk in (False, True)]
    if every:
        return full
    return [(torch.bfloat16, d, False, False), (torch.bfloat16, d, False, True),
            (torch.float8_e4m3fn, d // 2, False, True), (torch.float8_e4m3fn, d, True, False)]


def rope_cases():
    from vdeploy_kernels.rope_store_kv import rope_store_kv

    tokens = 64
    for label, h, hk, d, every in ROPE_SHAPES:
        qkv = torch.empty(tokens, (h + 2 * hk) * d, dtype=torch.bfloat16)  # q, k, v: views of one projection
        q, k, v = (qkv[:, : h * d].view(tokens, h, d), qkv[:, h * d : (h + hk) * d].view(tokens, hk, d),
                   qkv[:, (h + hk) * d :].view(tokens, hk, d))
        positions, slots = torch.zeros(tokens, dtype=torch.int64), torch.zeros(tokens, dtype=torch.int64)
        for cache_dtype, rot_dim, interleaved, keep_k in rope_variants(d, every):
            cache = torch.empty(2, 16, 16, hk, d, dtype=cache_dtype)
            cos_sin = torch.empty(256, rot_dim)
            name = (f"rope_store_kv {label} {h}/{hk} D{d}, {str(cache_dtype).removeprefix('torch.')} cache, rotary "
                    f"{rot_dim}{' interleaved' if interleaved else ''}{', k kept' if keep_k else ''}")
            yield name, {}, (lambda c=cache, cs=cos_sin, i=interleaved, kk=keep_k, q=q, k=k, v=v, p=positions,
                             s=slots: rope_store_kv(q, k, v, p, cs, c, s, interleaved=i, return_k=kk))


# MoE shapes: (name, experts, intermediate I, hidden H, top-k, block-FP8 weights, token counts T)
MOE_SHAPES = (("V2-Lite", 64, 1408, 2048, 6, False, (1, 64, 512)),
              ("R1", 256, 2048, 7168, 8, True, (1, 256, 8192)))
# the GPU names the engine reads on the lent Hopper machines (tuned_tables.SIBLINGS lets one borrow the other's table)
HOPPER_NAMES = (("H100", "NVIDIA H100 80GB HBM3"), ("H200", "NVIDIA H200"))


def moe_config_as_on(gpu, *args) -> dict:
    """moe_configs.moe_config(*args) as the engine calls it on a GPU named `gpu` (None: no CUDA device, the
    heuristic); the name tuned_tables.device_name reads is faked for the call."""
    from vdeploy_kernels import moe_configs, tuned_tables

    real_name = tuned_tables.device_name
    tuned_tables.device_name = lambda index: gpu
    try:
        return moe_configs.moe_config(*args, 0 if gpu else None)
    finally:
        tuned_tables.device_name = real_name


def moe_tile_choices(t, e, inter, hidden, k, fp8):
    """[(label, GPU name, config)]: moe_config's pick for T on each Hopper name, then the heuristic (what any other
    name gets, e.g. an H100 PCIe or NVL); names that get the same config share one entry."""
    from vdeploy_kernels import moe_configs, tuned_tables

    choices, short_of = [], {gpu: short for short, gpu in HOPPER_NAMES}
    for short, gpu in HOPPER_NAMES:
        label = f"{short} heuristic (no table)"  # which file moe_config reads: its own, else a sibling's (find_table)
        for candidate in (gpu, *tuned_tables.SIBLINGS.get(gpu, ())):
            if tuned_tables.load_table(moe_configs.KIND, moe_configs.config_name(e, inter, hidden, fp8, candidate)):
                owner = short_of.get(candidate, candidate)
                label = f"{short} table" if candidate == gpu else f"{short} via {owner} table"
                break
        choices.append((label, gpu, moe_config_as_on(gpu, t, e, inter, hidden, k, fp8)))
    choices.append(("heuristic", None, moe_config_as_on(None, t, e, inter, hidden, k, fp8)))
    merged: list = []
    for label, gpu, cfg in choices:
        same = [m for m in merged if m[2] == cfg]
        if same:
            same[0][0].append(label)
        else:
            merged.append(([label], gpu, cfg))
    return [(", ".join(labels), gpu, cfg) for labels, gpu, cfg in merged]


def moe_cases():
    """fused_moe as the engine calls it (shared experts' output given, epilogue fused) for each shape, T and tile
    choice, every launch reported (moe_align's three, the grouped GEMMs, the epilogue kernels); then moe_sum without
    a shared output and silu_and_mul_quant_fp8 alone at each shape."""
    import vdeploy_kernels.fused_moe as fm
    from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8
    from vdeploy_kernels.moe_epilogue import moe_sum, silu_and_mul_quant_fp8

    # with CPU tensors fused_moe would take its torch twins for the activation quantization and silu-and-mul-quant:
    # point those helpers at the CUDA branches' kernels
    fm._quantize_act, fm._silu_and_mul_quant = per_token_group_quant_fp8, silu_and_mul_quant_fp8
    gpu_now: dict = {}
    # fused_moe's own moe_config call (CPU tensors: device index None) as it runs on the GPU named gpu_now["name"]
    fm.moe_config = lambda *args: moe_config_as_on(gpu_now["name"], *args[:-1])
    bf16, e4m3 = torch.bfloat16, torch.float8_e4m3fn
    for model, e, inter, hidden, k, fp8, tokens in MOE_SHAPES:
        w_dtype = e4m3 if fp8 else bf16
        w13, w2 = torch.empty(e, 2 * inter, hidden, dtype=w_dtype), torch.empty(e, hidden, inter, dtype=w_dtype)
        scales = ((torch.empty(e, 2 * inter // 128, hidden // 128), torch.empty(e, hidden // 128, inter // 128))
                  if fp8 else (None, None))
        for t in tokens:
            x, shared = torch.empty(t, hidden, dtype=bf16), torch.empty(t, hidden, dtype=bf16)
            ids, weights = torch.zeros(t, k, dtype=torch.int64), torch.empty(t, k, dtype=torch.float32)
            shape = f"{model} T={t}"
            for label, gpu, cfg in moe_tile_choices(t, e, inter, hidden, k, fp8):
                def call(gpu=gpu, x=x, shared=shared, ids=ids, weights=weights):
                    gpu_now["name"] = gpu
                    fm.fused_moe(x, w13, w2, ids, weights, *scales, shared_output=shared)
                yield f"fused_moe {shape} [{label}]", cfg, call
            y = torch.empty(t * k, hidden, dtype=bf16)
            yield f"moe_sum {shape} no shared", {}, (lambda y=y: moe_sum(y, k))
            h = torch.empty(t * k, 2 * inter, dtype=bf16)
            yield f"silu_and_mul_quant_fp8 {shape}", {}, (lambda h=h: silu_and_mul_quant_fp8(h))


def sampling_cases():
    """The one-pass Gumbel-max sampler at V2-Lite's (102,400) and Qwen2's (152,064, a padded-vocab view) vocabularies,
    float32 and bf16 logits, 1 and 512 rows."""
    from vdeploy_kernels.sampling import gumbel_sample

    for rows, vocab, padded, dtype in ((512, 102400, 102400, torch.float32), (1, 152064, 152064 + 64, torch.float32),
                                       (512, 151936, 151936, torch.bfloat16)):
        logits = torch.empty(rows, padded, dtype=dtype)[:, :vocab]
        args = (logits, torch.empty(rows), torch.empty(rows, dtype=torch.int64))
        yield f"gumbel_sample {rows} x {vocab} {str(dtype)[6:]}", {}, (lambda a=args: gumbel_sample(*a))


def fp8_decode_cases():
    """fp8_gemm.w8a8_block_linear at M ≤ 16 (the fused decode launch) for every (N, K) of R1 with a tuned table, in
    the H200 table's tiles (nearest M) and the heuristic's."""
    from vdeploy_kernels import fp8_gemm_configs, tuned_tables
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear

    table_dir = Path(fp8_gemm_configs.__file__).parent / "configs" / fp8_gemm_configs.KIND
    for path in sorted(table_dir.glob("N*-K*-block128x128-NVIDIA_H200.json")):
        n, k = (int(part[1:]) for part in path.name.split("-")[:2])
        table = tuned_tables.load_table(fp8_gemm_configs.KIND, path.name)
        w, ws = torch.empty(n, k, dtype=torch.float8_e4m3fn), torch.empty(-(-n // 128), -(-k // 128))
        for m in (1, 4, 16):
            x = torch.empty(m, k, dtype=torch.bfloat16)
            for label, cfg in (("H200 table's tiles", {**tuned_tables.nearest(table, m), "fused": True}),
                               ("heuristic's tiles", {**fp8_gemm_configs.default_config(m), "fused": True}),
                               ("swap_ab 64", {"block_n": 64, "num_warps": 4, "num_stages": 4, "swap_ab": True,
                                               "fused": True}),
                               ("swap_ab 128", {"block_n": 128, "num_warps": 4, "num_stages": 3, "swap_ab": True,
                                                "fused": True}),
                               ("pre_quant swap_ab 64, split 4", {"block_n": 64, "num_warps": 4, "num_stages": 4,
                                                                 "split_k": 4, "swap_ab": True, "pre_quant": True,
                                                                 "fused": True}),
                               ("pre_quant 32, split 8", {"block_n": 32, "num_warps": 4, "num_stages": 3,
                                                          "split_k": 8, "pre_quant": True, "fused": True}),
                               ("two-step, split 4", {**fp8_gemm_configs.default_config(m), "split_k": 4})):
                if cfg.get("backend") == "scaled_mm":
                    continue
                yield (f"fp8 decode linear N{n} K{k} M={m} [{label}]", cfg,
                       lambda x=x, w=w, ws=ws, cfg=cfg: w8a8_block_linear(x, w, ws, config=cfg))
        x = torch.empty(512, k, dtype=torch.bfloat16)  # prefill sizes: quantize, then the tiled GEMM
        yield (f"fp8 linear N{n} K{k} M=512 [heuristic]", {}, lambda x=x, w=w, ws=ws: w8a8_block_linear(x, w, ws))


def fp8_table_cases():
    """Every Triton row of every shipped block-FP8 table (each GPU kind's), launched as the engine launches it at the
    row's own M: a row tuned under another Triton can need more shared memory than a Hopper program may have (the
    o_proj row at M 32 asked for 256 KB under Triton 3.6 and stopped R1 engines on the GPU)."""
    from vdeploy_kernels import fp8_gemm_configs, tuned_tables
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear

    table_dir = Path(fp8_gemm_configs.__file__).parent / "configs" / fp8_gemm_configs.KIND
    for path in sorted(table_dir.glob("N*-K*-block128x128-*.json")):
        n, k = (int(part[1:]) for part in path.name.split("-")[:2])
        w, ws = torch.empty(n, k, dtype=torch.float8_e4m3fn), torch.empty(-(-n // 128), -(-k // 128))
        for m, cfg in zip(*tuned_tables.load_table(fp8_gemm_configs.KIND, path.name)):
            if cfg.get("backend") == "scaled_mm":
                continue
            x = torch.empty(m, k, dtype=torch.bfloat16)
            yield (f"fp8 table {path.stem} M={m}", cfg, lambda x=x, w=w, ws=ws, cfg=cfg: w8a8_block_linear(x, w, ws,
                                                                                                          config=cfg))


def w4a16_cases():
    """The W4A16 decode kernels at R1-Distill-Qwen-7B's gate_up (N 37888, K 3584, group 128): the factored kernel in
    its default tiles at M 1 (CUDA cores), in the tensor-core variant at M 4 and on the CUDA cores at M 4 with the
    layer's bias added in its store, bf16 activations; the dequantize-then-
    cuBLAS path's kernel (uniform groups and act order) and the in-register dequantizing GEMM at M 16."""
    from vdeploy_kernels.w4a16_factored import w4a16_factored_matmul
    from vdeploy_kernels.w4a16_gemm import w4a16_config

    n, k, group = 37888, 3584, 128
    qweight, g_idx = torch.empty(k // 8, n, dtype=torch.int32), torch.empty(k, dtype=torch.int32)
    scales, zeros = torch.empty(k // group, n, dtype=torch.float16), torch.empty(k // group, n, dtype=torch.float16)
    for m, cfg in ((1, w4a16_config(1, n, k, group, 132)),
                   (4, {"block_m": 16, "block_n": 64, "block_k": 128, "num_warps": 4, "num_stages": 3, "dot": True,
                        "split_k": 4})):
        x = torch.empty(m, k, dtype=torch.bfloat16)
        yield (f"w4a16 factored N{n} K{k} M={m}", cfg,
               lambda x=x, cfg=cfg: w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group, cfg))
    bias, x4 = torch.empty(n, dtype=torch.bfloat16), torch.empty(4, k, dtype=torch.bfloat16)
    fma4 = {"block_m": 4, "block_n": 128, "block_k": 64, "num_warps": 1, "num_stages": 3, "split_k": 4}
    yield (f"w4a16 factored N{n} K{k} M=4 CUDA cores + bias", fma4,
           lambda: w4a16_factored_matmul(x4, qweight, scales, zeros, g_idx, group, fma4, bias))
    from vdeploy_kernels.w4a16_gemm import dequantize_w4, w4a16_matmul

    x16 = torch.empty(16, k, dtype=torch.bfloat16)
    yield (f"w4a16 dequantizing GEMM N{n} K{k} M=16", {}, lambda: w4a16_matmul(x16, qweight, scales, zeros, g_idx, group))
    for g in (group, 0):
        yield (f"w4a16 dequantize N{n} K{k} group {g}", {},
               lambda g=g: dequantize_w4(qweight, scales, zeros, g_idx, g, torch.bfloat16))


def gemv_cases():
    """The dense decode GEMV at Llama-3.1-8B's o_proj (N 4096, K 4096, bf16): the sweep's largest register tiles at
    M 1 (64 products a thread) and M 4, with K splits (tickets) and without."""
    from vdeploy_kernels.dense_gemv import dense_gemv

    n, k = 4096, 4096
    w = torch.empty(n, k, dtype=torch.bfloat16)
    for m, bn, bk, warps, split in ((1, 32, 512, 8, 4), (1, 8, 1024, 4, 1), (4, 16, 256, 8, 8)):
        cfg = {"block_m": m, "block_n": bn, "block_k": bk, "split_k": split, "num_warps": warps, "num_stages": 4}
        x = torch.empty(m, k, dtype=torch.bfloat16)
        yield (f"dense gemv N{n} K{k} M={m} BN{bn} BK{bk} split {split}", cfg,
               lambda x=x, cfg=cfg: dense_gemv(x, w, cfg))


def attention_cases():
    """Decode attention at Llama-3.1-8B's heads (32 / 8, D 128, bf16, pages of 16) in the GPU's default tiles, 32
    splits (batch 1: split and reduce launches) and one (batch 256: one launch); MLA decode at R1's width (128 heads,
    latent 512 + rope 64) with 16 splits and one."""
    from types import SimpleNamespace

    from vdeploy_kernels.decode_attention import DecodeConfig, decode_attention
    from vdeploy_kernels.mla_attention import mla_attention

    for batch, splits in ((1, 32), (256, 1)):
        q, out = torch.empty(batch, 32, 128, dtype=torch.bfloat16), torch.empty(batch, 32, 128, dtype=torch.bfloat16)
        cache = torch.empty(2, 64, 16, 8, 128, dtype=torch.bfloat16)
        seq_lens, tables = torch.empty(batch, dtype=torch.int32), torch.empty(batch, 8, dtype=torch.int32)
        cfg = DecodeConfig(128, splits, 4, 2)
        yield (f"decode attention B={batch} splits {splits}", {"splits": splits},
               lambda a=(q, cache, out, seq_lens, tables, batch, 0.08, 128, cfg): decode_attention(*a))
    for batch, splits in ((1, 16), (256, 1)):
        q = torch.empty(batch, 128, 576, dtype=torch.bfloat16)
        cache = torch.empty(1, 64, 64, 1, 576, dtype=torch.bfloat16)
        rows = torch.empty(batch, dtype=torch.int32)
        meta = SimpleNamespace(query_rows=(rows, rows), block_tables=torch.empty(batch, 8, dtype=torch.int32))
        yield (f"mla attention B={batch} splits {splits}", {"splits": splits},
               lambda q=q, cache=cache, meta=meta, s=splits: mla_attention(q, cache, meta, 0.1, 512, num_splits=s,
                                                                           tiles={"block_h": 64, "block_n": 64,
                                                                                  "num_warps": 8, "num_stages": 2}))


GROUPS = {"fresh": fresh_cases, "rope": rope_cases, "moe": moe_cases, "sampling": sampling_cases,
          "fp8dec": fp8_decode_cases, "fp8tables": fp8_table_cases, "w4a16": w4a16_cases, "gemv": gemv_cases, "attention": attention_cases}
