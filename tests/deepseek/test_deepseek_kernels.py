"""DeepSeek Triton kernels against their torch twins, in the Triton interpreter on CPU (tiny shapes).
FP8 activations are quantized by torch here: the interpreter's fp32->fp8 cast is wrong (triton issue 8322)."""

import json
from pathlib import Path

import pytest
import torch

from vdeploy.layers.forward_context import AttentionMetadata
from vdeploy_kernels import reference_deepseek as ref

pytest.importorskip("triton")


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("m,n,k", [(1, 128, 128), (7, 200, 300), (33, 256, 384)])
def test_w8a8_block_matmul_matches_twin(m, n, k):
    from vdeploy_kernels.fp8_gemm import w8a8_block_matmul

    torch.manual_seed(m)
    wq, ws = ref.quantize_weight_block(torch.randn(n, k))
    xq, xs = ref.quantize_act_per_token_group(torch.randn(m, k))
    out = w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)
    assert out.shape == (m, n)
    assert rel_err(out, ref.w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)) < 1e-5


@pytest.mark.parametrize("t,k", [(1, 256), (7, 300), (45, 384)])
def test_per_token_group_quant_tiles_match_twin(t, k):
    """The row-block tiling (rows past T, a partial last group): checked before the fp8 cast, which the
    interpreter gets wrong, by asking the kernel for float32 output."""
    from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8

    x = torch.randn(t, k, generator=torch.Generator().manual_seed(t)) * 3
    q, s = per_token_group_quant_fp8(x, 128, out_dtype=torch.float32)
    pad = torch.nn.functional.pad(x, (0, -k % 128)).view(t, -1, 128)
    scale = pad.abs().amax(-1).clamp(min=1e-12) / 448.0  # [T, G]
    torch.testing.assert_close(s, scale)
    expected = (pad / scale[..., None]).clamp(-448.0, 448.0).view(t, -1)[:, :k]
    torch.testing.assert_close(q, expected)


@pytest.mark.parametrize("config", [
    {"block_m": 16, "block_n": 32, "num_warps": 4, "num_stages": 2, "split_k": 3},  # K blocks 3: one per split
    {"block_m": 16, "block_n": 256, "num_warps": 4, "num_stages": 2, "split_k": 2},  # 2 weight-scale rows per tile
    {"block_m": 16, "block_n": 64, "block_k": 64, "num_warps": 4, "num_stages": 2, "group_m": 2},
])
def test_w8a8_block_matmul_split_k_and_bands_match_twin(config):
    from vdeploy_kernels.fp8_gemm import w8a8_block_matmul

    torch.manual_seed(1)
    m, n, k = 40, 320, 384
    wq, ws = ref.quantize_weight_block(torch.randn(n, k))
    xq, xs = ref.quantize_act_per_token_group(torch.randn(m, k))
    out = w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32, config=config)
    assert rel_err(out, ref.w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)) < 1e-5
    from vdeploy_kernels.split_k import split_tickets

    assert int(split_tickets(out.device).abs().sum()) == 0  # splits summed in the launch, counters reset



@pytest.mark.parametrize("m,n,k,config", [
    (1, 200, 300, {"block_n": 64, "num_warps": 4, "num_stages": 2}),  # partial N tile and K block, one split
    (5, 320, 384, {"block_n": 32, "num_warps": 4, "num_stages": 2, "split_k": 3}),  # one K block per split
    (16, 256, 640, {"block_n": 256, "num_warps": 4, "num_stages": 2, "split_k": 2}),  # 2 weight-scale rows a tile
    (3, 200, 384, {"block_n": 64, "num_warps": 4, "num_stages": 2, "split_k": 2, "swap_ab": True}),
    (2, 200, 300, {"block_n": 64, "num_warps": 4, "num_stages": 2, "split_k": 2, "pre_quant": True}),
    (4, 256, 640, {"block_n": 64, "num_warps": 4, "num_stages": 2, "split_k": 3, "pre_quant": True, "swap_ab": True}),
])
def test_fused_decode_linear_matches_dequantized_matmul(m, n, k, config):
    """The one-launch decode path (x quantized in the K loop, split-K summed by the last program of each tile). Its
    activations stay float32 here (the interpreter's fp8 cast is wrong), so it must equal x @ dequant(W)ᵀ; the
    e4m3 rounding is checked on the GPU (test_deepseek_kernels_gpu.py)."""
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear
    from vdeploy_kernels.split_k import split_tickets

    gen = torch.Generator().manual_seed(m)
    wq, ws = ref.quantize_weight_block(torch.randn(n, k, generator=gen))
    x = torch.randn(m, k, generator=gen) * torch.rand(1, k, generator=gen) * 4  # per-group scales differ
    out = w8a8_block_linear(x, wq, ws, config={**config, "fused": True}, act_dtype=torch.float32)
    assert out.shape == (m, n) and out.dtype == x.dtype
    assert rel_err(out, x @ ref.dequantize_weight_block(wq, ws).t()) < 1e-5
    assert int(split_tickets(x.device).abs().sum()) == 0  # every tile's counter reset for the next launch



def test_shipped_fp8_tables_choose_the_fused_launch_only_at_decode_sizes():
    """Every committed block-FP8 table: a row that takes the one-launch path is a decode row (M ≤ 16) in tiles the
    kernel has (16-row tiles, 32-128 columns, K tiles of the scale block); a table without such rows runs two steps."""
    from vdeploy_kernels import fp8_gemm_configs, tuned_tables
    from vdeploy_kernels.fp8_gemm import DECODE_ROWS

    tables = sorted((Path(fp8_gemm_configs.__file__).parent / "configs" / fp8_gemm_configs.KIND).glob("*.json"))
    fused_rows = 0
    for path in tables:
        for m, cfg in zip(*tuned_tables.load_table(fp8_gemm_configs.KIND, path.name)):
            if cfg.get("fused"):
                fused_rows += 1
                assert m <= DECODE_ROWS and cfg["block_m"] == 16 and cfg["block_n"] in (32, 64, 128), (path.name, m)
                assert cfg.get("block_k", 128) == 128 and "backend" not in cfg, (path.name, m)
    assert fused_rows  # the H100's measured choices (benchmarks/results/2026-12-06f-h100/)


def test_block_gemm_config_reads_the_tuned_table(tmp_path, monkeypatch):
    import json

    from vdeploy_kernels import fp8_gemm_configs, tuned_tables

    name = fp8_gemm_configs.config_name(7168, 16384, (128, 128), "NVIDIA H200")
    assert name == "N7168-K16384-block128x128-NVIDIA_H200.json"
    local = tmp_path / "kernel_configs" / "fp8_block_gemm"
    local.mkdir(parents=True)
    table = {"1": {"block_m": 16, "block_n": 32, "num_warps": 4, "num_stages": 5, "split_k": 4},
             "4096": {"backend": "scaled_mm"}}
    (local / name).write_text(json.dumps(table))
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H200")
    tuned_tables.load_table.cache_clear()
    try:
        assert fp8_gemm_configs.block_gemm_config(2, 7168, 16384, (128, 128), 0)["split_k"] == 4
        assert fp8_gemm_configs.block_gemm_config(3000, 7168, 16384, (128, 128), 0) == {"backend": "scaled_mm"}
        assert fp8_gemm_configs.block_gemm_config(2, 7168, 16384, (128, 128), None) == fp8_gemm_configs.default_config(2)
    finally:
        tuned_tables.load_table.cache_clear()


def test_pinned_decode_rows_take_the_one_row_entry(tmp_path, monkeypatch):
    """Speculative decoding pins decode-sized steps (M ≤ 16) to the table's one-row entry, whose K split a verify
    step of 2-16 rows then sums with as a one-row step does; larger steps keep their own rows."""
    import json

    from vdeploy_kernels import fp8_gemm_configs, tuned_tables

    local = tmp_path / "kernel_configs" / "fp8_block_gemm"
    local.mkdir(parents=True)
    table = {"1": {"block_m": 16, "block_n": 128, "num_warps": 4, "num_stages": 3, "split_k": 8},
             "4": {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "split_k": 4},
             "32": {"block_m": 64, "block_n": 128, "num_warps": 4, "num_stages": 4, "split_k": 4}}
    (local / fp8_gemm_configs.config_name(7168, 16384, (128, 128), "NVIDIA H200")).write_text(json.dumps(table))
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H200")
    tuned_tables.load_table.cache_clear()

    def split(m, pinned):
        cfg = fp8_gemm_configs.block_gemm_config(m, 7168, 16384, (128, 128), 0, pin_decode_rows=pinned)
        return cfg["split_k"], cfg["block_m"]

    try:
        assert [split(m, False) for m in (1, 3, 16, 32)] == [(8, 16), (4, 16), (4, 16), (4, 64)]
        assert [split(m, True) for m in (1, 3, fp8_gemm_configs.DECODE_ROWS, 32)] == [(8, 16)] * 3 + [(4, 64)]
    finally:
        tuned_tables.load_table.cache_clear()


def _routing(t, e, k, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(e, generator=gen)[:k] for _ in range(t)])
    return ids, torch.rand(t, k, generator=gen)


@pytest.mark.parametrize("t,e,k", [(1, 8, 2), (13, 8, 3), (40, 4, 4)])
def test_fused_moe_matches_expert_loop(t, e, k):
    from vdeploy_kernels.fused_moe import fused_moe

    torch.manual_seed(t)
    x, w13, w2 = torch.randn(t, 64), torch.randn(e, 96, 64) * 0.1, torch.randn(e, 64, 48) * 0.1
    ids, weights = _routing(t, e, k, t)
    assert rel_err(fused_moe(x, w13, w2, ids, weights), ref.moe_loop(x, w13, w2, ids, weights)) < 1e-5


@pytest.mark.parametrize("block_m,block_n,block_k", [(16, 32, 32), (32, 64, 16), (64, 16, 64)])
def test_fused_moe_gives_the_same_result_under_every_tile_config(block_m, block_n, block_k):
    from vdeploy_kernels.fused_moe import fused_moe

    torch.manual_seed(block_m)
    t, e, k = 21, 8, 3
    x, w13, w2 = torch.randn(t, 64), torch.randn(e, 96, 64) * 0.1, torch.randn(e, 64, 48) * 0.1
    ids, weights = _routing(t, e, k, 2)
    gemm = {"block_n": block_n, "block_k": block_k, "num_warps": 4, "num_stages": 2}
    config = {"block_m": block_m, "w13": gemm, "w2": dict(gemm, block_n=16)}
    assert rel_err(fused_moe(x, w13, w2, ids, weights, config=config), ref.moe_loop(x, w13, w2, ids, weights)) < 1e-5


def test_moe_config_takes_the_nearest_tuned_token_count_and_prefers_the_local_table(tmp_path, monkeypatch):
    import json

    from vdeploy_kernels import moe_configs, tuned_tables

    name = moe_configs.config_name(64, 1408, 2048, False, "NVIDIA H200")
    assert name == "E64-I1408-H2048-bf16-NVIDIA_H200.json"
    gemm = {"block_n": 128, "block_k": 64, "num_warps": 8, "num_stages": 3}
    local = tmp_path / "kernel_configs" / "fused_moe"
    local.mkdir(parents=True)
    (local / name).write_text(json.dumps({str(t): {"block_m": t, "w13": gemm, "w2": gemm} for t in (16, 64, 256)}))
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H200")
    tuned_tables.load_table.cache_clear()
    try:
        picked = [moe_configs.moe_config(t, 64, 1408, 2048, 6, False, 0)["block_m"] for t in (1, 30, 50, 200, 9999)]
        assert picked == [16, 16, 64, 256, 256]
        # the H100 SXM has no table of its own: it borrows its sibling H200's (the same chip)
        monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H100 80GB HBM3")
        assert moe_configs.moe_config(200, 64, 1408, 2048, 6, False, 0)["block_m"] == 256
        # another GPU kind has no table: the heuristic, never a sweep at start
        monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA A100")
        assert moe_configs.moe_config(1, 64, 1408, 2048, 6, False, 0) == moe_configs.default_config(1, 64, 6, False)
    finally:
        tuned_tables.load_table.cache_clear()


def test_fused_moe_fp8_matches_twin_on_dequantized_weights():
    from vdeploy_kernels.fused_moe import fused_moe

    torch.manual_seed(0)
    t, e, k, h, i = 9, 4, 2, 256, 128
    x = torch.randn(t, h)
    q13, s13 = zip(*(ref.quantize_weight_block(torch.randn(2 * i, h) * 0.1) for _ in range(e)))
    q2, s2 = zip(*(ref.quantize_weight_block(torch.randn(h, i) * 0.1) for _ in range(e)))
    q13, s13, q2, s2 = map(torch.stack, (q13, s13, q2, s2))
    ids, weights = _routing(t, e, k, 1)
    dense13 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q13, s13)])
    dense2 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q2, s2)])
    out = fused_moe(x, q13, q2, ids, weights, s13, s2)
    # activations are quantized to e4m3 per 128 channels: a few percent of error, no more
    assert rel_err(out, ref.moe_loop(x, dense13, dense2, ids, weights)) < 0.06


@pytest.mark.parametrize("heads,block_size,splits", [(4, 16, None), (16, 32, 1), (20, 16, 4), (72, 16, 2)])
def test_mla_attention_matches_twin_for_mixed_batch(heads, block_size, splits):
    from vdeploy_kernels.mla_attention import mla_attention

    torch.manual_seed(heads)
    lora, rope, num_blocks = 64, 16, 24
    cache = torch.randn(1, num_blocks, block_size, 1, lora + rope)
    q_lens, seq_lens = [1, 1, 6], [37, 5, 30]  # two decodes, then an extend over a cached prefix
    tables = torch.randperm(num_blocks)[:12].view(3, 4).to(torch.int32)
    qsl = torch.tensor([0, 1, 2, 8], dtype=torch.int32)
    meta = AttentionMetadata(torch.zeros(8, dtype=torch.long), qsl, torch.tensor(seq_lens, dtype=torch.int32),
                             tables, 6, 37, 2, block_size, q_lens, seq_lens)
    q = torch.randn(8, heads, lora + rope)
    out = mla_attention(q, cache, meta, 0.125, lora, num_splits=splits)
    assert rel_err(out, ref.mla_attention(q, cache, meta, 0.125, lora)) < 1e-5
    # the model's form: q_lat as the transposed view of W_UK's bmm output [H, T, L], q_rope apart
    q_lat = q[..., :lora].transpose(0, 1).contiguous().transpose(0, 1)
    apart = mla_attention(q_lat, cache, meta, 0.125, lora, num_splits=splits, q_rope=q[..., lora:].contiguous())
    assert torch.equal(apart, out)


MLA_VARIANTS = [  # the default's tiles, and others a tuned table may pick
    {"block_h": 64, "block_n": 64, "num_warps": 8, "num_stages": 2},
    {"block_h": 128, "block_n": 16, "num_warps": 8, "num_stages": 3},
]


@pytest.mark.parametrize("tiles", MLA_VARIANTS)
@pytest.mark.parametrize("splits", [1, 4])
def test_mla_attention_r1_width_variants_match_twin(tiles, splits):
    """R1's latent width (L=512, R=64) at 6 heads: ragged contexts over several shuffled pages (a 1-token context,
    one ending mid-page, an extend row group), one split (output written directly) and four (partials + reduce)."""
    from vdeploy_kernels.mla_attention import mla_attention

    torch.manual_seed(splits)
    lora, rope, heads, block_size, num_blocks = 512, 64, 6, 16, 12
    cache = torch.randn(1, num_blocks, block_size, 1, lora + rope)
    q_lens, seq_lens = [1, 1, 3], [1, 45, 20]
    tables = torch.randperm(num_blocks)[:9].view(3, 3).to(torch.int32)
    qsl = torch.tensor([0, 1, 2, 5], dtype=torch.int32)
    meta = AttentionMetadata(torch.zeros(5, dtype=torch.long), qsl, torch.tensor(seq_lens, dtype=torch.int32),
                             tables, 3, 45, 2, block_size, q_lens, seq_lens)
    q = torch.randn(5, heads, lora + rope)
    twin = ref.mla_attention(q, cache, meta, 0.1, lora)
    q_lat = q[..., :lora].transpose(0, 1).contiguous().transpose(0, 1)  # the model's form (see layers/mla.py)
    out = mla_attention(q_lat, cache, meta, 0.1, lora, num_splits=splits, tiles=tiles, q_rope=q[..., lora:])
    assert rel_err(out, twin) < 1e-5


def test_mla_decode_config_reads_tuned_table_else_heuristic(tmp_path, monkeypatch):
    from vdeploy_kernels import mla_attention as mla
    from vdeploy_kernels import tuned_tables

    assert mla.decode_config(128, 256, 512, 64, torch.bfloat16, None) == mla.decode_tiles(128)  # no GPU: heuristic
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    monkeypatch.setattr(tuned_tables, "device_name", lambda index: "NVIDIA H200")
    assert mla.decode_config(24, 256, 512, 64, torch.bfloat16, 0) == mla.decode_tiles(24)  # no table: heuristic
    small = {"block_h": 64, "block_n": 32, "num_warps": 8, "num_stages": 2, "grid_target": 528}
    large = {"block_h": 128, "block_n": 16, "num_warps": 8, "num_stages": 3}
    folder = tmp_path / "kernel_configs" / mla.KIND
    folder.mkdir(parents=True)
    (folder / mla.config_name(24, 512, 64, torch.float8_e4m3fn, "NVIDIA H200")).write_text(
        json.dumps({"1": small, "1024": large}))
    tuned_tables.load_table.cache_clear()
    assert mla.decode_config(24, 8, 512, 64, torch.float8_e4m3fn, 0) == small
    assert mla.decode_config(24, 900, 512, 64, torch.float8_e4m3fn, 0) == large
    assert mla.decode_config(24, 8, 512, 64, torch.bfloat16, 0) == mla.decode_tiles(24)  # other cache dtype
    tuned_tables.load_table.cache_clear()
    assert mla.default_splits(64, 2) == 2 and mla.default_splits(64, 2, 528) == 4 and mla.default_splits(512, 4) == 1


ROUTINGS = {  # (experts, spec) of the real configs: R1 (noaux_tc), V2 (group-limited greedy), V2-Lite (greedy)
    "r1": (256, dict(top_k=8, sigmoid=True, n_group=8, topk_group=4, group_score="sum_top2", renormalize=True,
                     scaling=2.5)),
    "v2": (160, dict(top_k=6, sigmoid=False, n_group=8, topk_group=3, group_score="max", scaling=16.0)),
    "v2-lite": (64, dict(top_k=6, sigmoid=False, scaling=1.0)),
}


@pytest.mark.parametrize("name", sorted(ROUTINGS))
def test_fused_routing_matches_twin(name):
    from vdeploy.layers.moe import RoutingSpec
    from vdeploy_kernels.moe_routing import select_experts

    experts, fields = ROUTINGS[name]
    spec = RoutingSpec(**fields)
    torch.manual_seed(experts)
    logits = torch.randn(37, experts) * 2  # [T, E]
    bias = torch.randn(experts) * 0.1 if spec.sigmoid else None
    weights, ids = select_experts(logits, bias, spec)
    ref_weights, ref_ids = ref.select_experts(logits, bias, spec)
    assert torch.equal(ids, ref_ids)  # same experts, same (descending) order
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype,heads", [(torch.float32, 5), (torch.float16, 5), (torch.float32, 37)])
def test_mla_rope_and_cache_matches_twin(dtype, heads):
    """The fused glue (q rope in place, c_kv norm, k rope, cache write) against the unfused composition: the same
    q and the same cache bytes; a padding row (slot -1) writes nothing; slots scattered over pages of 4; 37 heads
    span three 16-head programs, the last one partial."""
    from vdeploy_kernels.mla_rope_cache import mla_rope_and_cache

    gen = torch.Generator().manual_seed(3)
    t, nope, rope, lora, pages, page = 6, 16, 8, 32, 5, 4
    q = torch.randn(t, heads, nope + rope, generator=gen).to(dtype)
    latent = torch.randn(t, lora + rope, generator=gen).to(dtype)
    weight = (1 + 0.1 * torch.randn(lora, generator=gen)).to(dtype)
    angles = torch.outer(torch.arange(64).float(), 1.0 / 10000 ** (torch.arange(0, rope, 2).float() / rope))
    cos_sin = torch.cat((angles.cos(), angles.sin()), dim=-1)
    positions = torch.tensor([0, 5, 63, 7, 7, 12])
    slots = torch.tensor([3, 17, -1, 0, 9, 18])
    caches, qs = [], []
    for fn in (mla_rope_and_cache, ref.mla_rope_and_cache):
        cache = torch.full((1, pages, page, 1, lora + rope), 7.0, dtype=dtype)
        qi = q.clone()
        fn(qi[..., nope:], latent, positions, cos_sin, weight, 1e-6, cache, slots)
        caches.append(cache)
        qs.append(qi)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(qs[0], qs[1], rtol=tol, atol=tol)
    torch.testing.assert_close(caches[0], caches[1], rtol=tol, atol=tol)
    assert torch.equal(qs[0][..., :nope], q[..., :nope])  # q_nope untouched
    flat = caches[0].view(pages * page, -1)
    written = {3, 17, 0, 9, 18}
    assert all(bool((flat[s] == 7.0).all()) == (s not in written) for s in range(pages * page))
