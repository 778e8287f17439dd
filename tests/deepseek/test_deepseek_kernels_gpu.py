"""DeepSeek kernels on a real GPU at R1's shapes, against the torch twins (run with TRITON_INTERPRET=0 on a CUDA
machine; skipped elsewhere). Fresh random inputs for every case; outputs poisoned before each run."""

import os

import pytest
import torch

from vdeploy.layers.forward_context import AttentionMetadata
from vdeploy_kernels import reference_deepseek as ref

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                       reason="needs a CUDA GPU with compiled Triton"),
]


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("t", [1, 7, 128, 1000, 8192])
@pytest.mark.parametrize("k", [1536, 7168, 18432])
def test_per_token_group_quant(t, k):
    from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8

    x = torch.randn(t, k, device="cuda", dtype=torch.bfloat16)
    q, s = per_token_group_quant_fp8(x)
    q_ref, s_ref = ref.quantize_act_per_token_group(x)
    torch.testing.assert_close(s, s_ref, rtol=1e-6, atol=0)
    assert rel_err(q.float() * s.repeat_interleave(128, 1), x) < 0.05


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9),
                    reason="FP8 tensor cores need sm89+")
@pytest.mark.parametrize("m,n,k", [(1, 2112, 7168), (16, 24576, 1536), (200, 7168, 2048), (1024, 4096, 7168)])
def test_w8a8_block_matmul(m, n, k):
    from vdeploy_kernels.fp8_gemm import w8a8_block_matmul

    wq, ws = ref.quantize_weight_block(torch.randn(n, k, device="cuda"))
    xq, xs = ref.quantize_act_per_token_group(torch.randn(m, k, device="cuda"))
    expected = ref.w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)
    out = w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.bfloat16)
    assert rel_err(out, expected) < 1e-2
    split = {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "split_k": 4, "group_m": 8}
    assert rel_err(w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.bfloat16, config=split), expected) < 1e-2
    if torch.cuda.get_device_capability() == (9, 0):  # cuBLAS's block-scaled GEMM: Hopper only
        cublas = w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.bfloat16, config={"backend": "scaled_mm"})
        assert rel_err(cublas, expected) < 1e-2


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9),
                    reason="FP8 tensor cores need sm89+")
@pytest.mark.parametrize("m", [1, 3, 16])
@pytest.mark.parametrize("n,k", [(1536, 7168), (576, 7168), (7168, 16384), (7168, 2048)])
def test_fused_decode_linear(m, n, k):
    """The one-launch decode linear (x quantized in the K loop, split-K summed in the launch) against the twin, the
    two-step path with the same tiles, and itself replayed in a CUDA graph (the split counters reset each launch)."""
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear
    from vdeploy_kernels.fp8_gemm_configs import block_gemm_config

    wq, ws = ref.quantize_weight_block(torch.randn(n, k, device="cuda"))
    x = (torch.randn(m, k, device="cuda") * torch.rand(1, k, device="cuda") * 4).to(torch.bfloat16)
    xq, xs = ref.quantize_act_per_token_group(x)
    expected = ref.w8a8_block_matmul(xq, xs, wq, ws, out_dtype=torch.float32)
    for config in ({**block_gemm_config(m, n, k, (128, 128), 0), "fused": True},
                   {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "split_k": 8},
                   {"block_m": 16, "block_n": 128, "num_warps": 4, "num_stages": 3},
                   {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "split_k": 4, "swap_ab": True},
                   {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "split_k": 4, "swap_ab": True,
                    "pre_quant": True},
                   {"block_m": 16, "block_n": 32, "num_warps": 4, "num_stages": 3, "split_k": 8, "pre_quant": True}):
        config = {**config, "fused": True}
        fused = w8a8_block_linear(x, wq, ws, config=config)
        assert fused.dtype == torch.bfloat16 and rel_err(fused, expected) < 1e-2, config
        two_step = w8a8_block_linear(x, wq, ws, config={**config, "fused": False})
        assert rel_err(fused, two_step) < 1e-3, config  # the same fp8 activations: only the sum order differs
    graph_out = torch.empty_like(fused)
    w8a8_block_linear(x, wq, ws, config=config)  # compile and create the split counters outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graph_out.copy_(w8a8_block_linear(x, wq, ws, config=config))
    eager = w8a8_block_linear(x, wq, ws, config=config)
    for _ in range(3):
        graph_out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(graph_out, eager)



@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9),
                    reason="FP8 tensor cores need sm89+")
@pytest.mark.parametrize("n,k", [(2112, 7168), (24576, 1536), (7168, 16384), (36864, 7168), (7168, 18432),
                                 (4096, 7168), (7168, 2048)])
def test_pinned_decode_rows_give_each_row_the_bits_of_a_one_row_step(n, k):
    """Change 44 with the shipped tables of this GPU (R1's linear shapes): pinned, a row computed in a step of 2-16
    rows (a speculative verify step) has exactly the bits it has in a one-row step (the plain decode step)."""
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear

    wq, ws = ref.quantize_weight_block(torch.randn(n, k, device="cuda"))
    x = (torch.randn(16, k, device="cuda") * torch.rand(1, k, device="cuda") * 4).to(torch.bfloat16)
    alone = torch.cat([w8a8_block_linear(x[i:i + 1], wq, ws, pin_decode_rows=True) for i in range(16)])
    for m in (2, 3, 4, 9, 16):
        assert torch.equal(w8a8_block_linear(x[:m], wq, ws, pin_decode_rows=True), alone[:m]), m


@pytest.mark.parametrize("t", [1, 256, 4096])
def test_interleaved_rotary_on_r1_mla_views(t):
    """DeepSeek's rope read in place from R1's projections: q_rope the last 64 channels of each of the 128 heads
    of q [T, 128, 192], k_rope the last 64 of the latent [T, 576] (strided views, interleaved pairs)."""
    from vdeploy.layers.rotary import compute_cos_sin_cache
    from vdeploy_kernels import reference
    from vdeploy_kernels.rotary import rotary

    scaling = {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32,
               "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    cache = compute_cos_sin_cache(64, 8192, 10000.0, scaling, torch.device("cuda"))
    q = torch.randn(t, 128, 192, device="cuda", dtype=torch.bfloat16)
    latent = torch.randn(t, 576, device="cuda", dtype=torch.bfloat16)
    positions = torch.randint(0, 8192, (t,), device="cuda")
    q_rope, k_rope = q[..., 128:], latent[:, 512:].reshape(t, 1, 64)
    q_out, k_out = rotary(q_rope, k_rope, positions, cache, interleaved=True)
    q_ref, k_ref = reference.rotary(q_rope, k_rope, positions, cache, interleaved=True)
    torch.testing.assert_close(q_out, q_ref, rtol=1.6e-2, atol=1.6e-2)
    torch.testing.assert_close(k_out, k_ref, rtol=1.6e-2, atol=1.6e-2)


@pytest.mark.parametrize("t,fp8_cache", [(1, False), (256, False), (4096, False), (256, True)])
def test_mla_rope_and_cache_r1_shapes(t, fp8_cache):
    """The fused MLA glue at R1's widths (128 heads, latent 512 + 64) against the unfused composition: q rotated in
    place and the cache bytes (bf16 or fp8 with a scale) written at scattered slots of 64-token pages."""
    from vdeploy.layers.rotary import compute_cos_sin_cache
    from vdeploy_kernels.mla_rope_cache import mla_rope_and_cache

    if fp8_cache and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 needs sm89+")
    cos_sin = compute_cos_sin_cache(64, 8192, 10000.0, None, torch.device("cuda"))
    q = torch.randn(t, 128, 192, device="cuda", dtype=torch.bfloat16)
    latent = torch.randn(t, 576, device="cuda", dtype=torch.bfloat16)
    weight = 1 + 0.1 * torch.randn(512, device="cuda", dtype=torch.bfloat16)
    positions = torch.randint(0, 8192, (t,), device="cuda")
    pages = t // 64 + 8
    slots = torch.randperm(pages * 64, device="cuda")[:t]
    slots[0] = -1  # a padding row writes nothing
    dtype = torch.float8_e4m3fn if fp8_cache else torch.bfloat16
    out = []
    for fn in (mla_rope_and_cache, ref.mla_rope_and_cache):
        cache = torch.zeros(1, pages, 64, 1, 576, device="cuda", dtype=dtype)
        qi = q.clone()
        fn(qi[..., 128:], latent, positions, cos_sin, weight, 1e-6, cache, slots, 0.5 if fp8_cache else 1.0)
        out.append((qi, cache))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1.6e-2, atol=1.6e-2)
    kernel_cache, twin_cache = out[0][1], out[1][1]
    # the norm's fp32 sum is reduced in another order than torch's: a value on a rounding boundary may land one
    # step apart, nothing more
    assert (kernel_cache.view(torch.uint8) != twin_cache.view(torch.uint8)).float().mean() < 1e-3
    torch.testing.assert_close(kernel_cache.float(), twin_cache.float(), rtol=0.13, atol=1e-2)
    written = torch.zeros(pages * 64, dtype=torch.bool, device="cuda")
    written[slots[1:]] = True
    assert not kernel_cache.view(pages * 64, -1)[~written].float().any()  # the padding row wrote nothing


@pytest.mark.parametrize("t,fp8", [(1, False), (64, False), (1, True), (33, True), (512, True)])
def test_fused_moe_r1_shapes(t, fp8):
    from vdeploy_kernels.fused_moe import fused_moe

    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need sm89+")
    e, k, h, i = 32, 8, 7168, 256  # 32 of R1's 256 experts at TP-8 width (2048 / 8)
    x = torch.randn(t, h, device="cuda", dtype=torch.bfloat16)
    w13 = torch.randn(e, 2 * i, h, device="cuda") * 0.02
    w2 = torch.randn(e, h, i, device="cuda") * 0.02
    ids = torch.stack([torch.randperm(e, device="cuda")[:k] for _ in range(t)])
    weights = torch.rand(t, k, device="cuda")
    if fp8:
        q13, s13 = zip(*(ref.quantize_weight_block(w) for w in w13))
        q2, s2 = zip(*(ref.quantize_weight_block(w) for w in w2))
        q13, s13, q2, s2 = map(torch.stack, (q13, s13, q2, s2))
        dense13 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q13, s13)])
        dense2 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q2, s2)])
        out = fused_moe(x, q13, q2, ids, weights, s13, s2)
        assert rel_err(out, ref.moe_loop(x.float(), dense13, dense2, ids, weights)) < 0.08
    else:
        w13, w2 = w13.bfloat16(), w2.bfloat16()
        out = fused_moe(x, w13, w2, ids, weights)
        assert rel_err(out, ref.moe_loop(x.float(), w13.float(), w2.float(), ids, weights)) < 2e-2


@pytest.mark.parametrize("e,k", [(256, 8), (64, 6)])  # R1, V2-Lite
@pytest.mark.parametrize("t", [1, 64, 512, 8192])
@pytest.mark.parametrize("block_m", [16, 64, 128])
def test_moe_align_matches_twin_eagerly_and_in_a_cuda_graph(e, k, t, block_m):
    from tests.deepseek.test_moe_align import check_against_twin
    from vdeploy_kernels.moe_align import moe_align

    def routing():  # k distinct experts per token, a third of the tokens on the first k experts (long runs)
        ids = torch.rand(t, e, device="cuda").topk(k, dim=-1).indices
        hot = torch.rand(t, 1, device="cuda") < 0.33
        return torch.where(hot, torch.arange(k, device="cuda"), ids)

    ids = routing()
    check_against_twin(ids, e, block_m)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # compiled by the eager call above: nothing compiles or syncs while capturing
        aligned = moe_align(ids, e, block_m)
    for _ in range(3):  # replays on fresh routing: no state may leak from one call into the next
        ids.copy_(routing())
        aligned[0].fill_(-7)  # poisoned: a replay must write every row and tile
        aligned[1].fill_(-7)
        graph.replay()
        check_against_twin(ids, e, block_m, aligned)


@pytest.mark.parametrize("heads", [16, 128])
@pytest.mark.parametrize("block_size", [16, 64])
def test_mla_attention_r1_shapes(heads, block_size):
    from vdeploy_kernels.mla_attention import mla_attention

    lora, rope = 512, 64
    q_lens, seq_lens = [1, 1, 1, 37], [1, 4097, 300, 700]
    num_blocks = sum(-(-s // block_size) for s in seq_lens) + 4
    cache = torch.randn(1, num_blocks, block_size, 1, lora + rope, device="cuda", dtype=torch.bfloat16)
    perm = torch.randperm(num_blocks, device="cuda").to(torch.int32)
    width = max(-(-s // block_size) for s in seq_lens)
    tables = torch.zeros(len(seq_lens), width, dtype=torch.int32, device="cuda")
    used = 0
    for i, s in enumerate(seq_lens):
        n = -(-s // block_size)
        tables[i, :n] = perm[used:used + n]
        used += n
    qsl = torch.tensor([0, 1, 2, 3, 40], dtype=torch.int32, device="cuda")
    meta = AttentionMetadata(torch.zeros(40, dtype=torch.long, device="cuda"), qsl,
                             torch.tensor(seq_lens, dtype=torch.int32, device="cuda"), tables, 37, 4097, 3,
                             block_size, q_lens, seq_lens)
    q = torch.randn(40, heads, lora + rope, device="cuda", dtype=torch.bfloat16)
    out = mla_attention(q, cache, meta, 0.1, lora)
    assert rel_err(out, ref.mla_attention(q.float(), cache.float(), meta, 0.1, lora)) < 2e-2
    q_lat = q[..., :lora].transpose(0, 1).contiguous().transpose(0, 1)  # the model's form (see layers/mla.py)
    for splits in (1, 4):
        apart = mla_attention(q_lat, cache, meta, 0.1, lora, num_splits=splits, q_rope=q[..., lora:].contiguous())
        assert rel_err(apart, ref.mla_attention(q.float(), cache.float(), meta, 0.1, lora)) < 2e-2


# every tile config the tuned tables may pick (benchmarks/kernels/tune_fused_moe.py), at V2-Lite's width (bf16) and
# at R1's width with 32 of its experts (block FP8), against the expert loop
TILE_CONFIGS = [(16, 64, 64, 4, 3), (32, 128, 64, 8, 3), (64, 128, 128, 8, 2), (128, 64, 128, 4, 4),
                (64, 256, 64, 8, 3), (128, 256, 128, 8, 3)]


@pytest.mark.parametrize("shape", ["v2-lite", "r1-width"])
@pytest.mark.parametrize("block_m,block_n,block_k,warps,stages", TILE_CONFIGS)
def test_fused_moe_tile_configs(shape, block_m, block_n, block_k, warps, stages):
    from vdeploy_kernels.fused_moe import fused_moe

    fp8 = shape == "r1-width"
    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need sm89+")
    e, k, h, i, t = (32, 8, 7168, 256, 300) if fp8 else (64, 6, 2048, 1408, 300)
    x = torch.randn(t, h, device="cuda", dtype=torch.bfloat16)
    w13 = torch.randn(e, 2 * i, h, device="cuda") * 0.02
    w2 = torch.randn(e, h, i, device="cuda") * 0.02
    ids = torch.rand(t, e, device="cuda").topk(k, dim=-1).indices
    weights = torch.rand(t, k, device="cuda")
    gemm = {"block_n": block_n, "block_k": block_k, "num_warps": warps, "num_stages": stages}
    config = {"block_m": block_m, "w13": gemm, "w2": gemm}
    try:
        if fp8:
            q13, s13 = map(torch.stack, zip(*(ref.quantize_weight_block(w) for w in w13)))
            q2, s2 = map(torch.stack, zip(*(ref.quantize_weight_block(w) for w in w2)))
            dense13 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q13, s13)])
            dense2 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q2, s2)])
            out = fused_moe(x, q13, q2, ids, weights, s13, s2, config=config)
            assert rel_err(out, ref.moe_loop(x.float(), dense13, dense2, ids, weights)) < 0.08
        else:
            w13, w2 = w13.bfloat16(), w2.bfloat16()
            out = fused_moe(x, w13, w2, ids, weights, config=config)
            assert rel_err(out, ref.moe_loop(x.float(), w13.float(), w2.float(), ids, weights)) < 2e-2
    except Exception as exc:  # noqa: BLE001 - a config past the shared memory is never in a table
        if "OutOfResources" in type(exc).__name__:
            pytest.skip(f"tile config exceeds this GPU's resources: {exc}")
        raise


@pytest.mark.parametrize("name", ["r1", "v2", "v2-lite"])
@pytest.mark.parametrize("tokens", [1, 256, 4096])
def test_fused_routing_matches_twin_on_gpu(name, tokens):
    from tests.deepseek.test_deepseek_kernels import ROUTINGS

    from vdeploy.layers.moe import RoutingSpec
    from vdeploy_kernels.moe_routing import select_experts

    experts, fields = ROUTINGS[name]
    spec = RoutingSpec(**fields)
    torch.manual_seed(tokens)
    logits = torch.randn(tokens, experts, device="cuda") * 2
    bias = torch.randn(experts, device="cuda") * 0.1 if spec.sigmoid else None
    weights, ids = select_experts(logits, bias, spec)
    ref_weights, ref_ids = ref.select_experts(logits, bias, spec)
    assert (ids == ref_ids).float().mean().item() > 0.999  # exact ties aside, the same experts in the same order
    same = (ids == ref_ids).all(dim=-1)
    torch.testing.assert_close(weights[same], ref_weights[same], rtol=1e-5, atol=1e-6)


def test_tiny_deepseek_engine_on_gpu_matches_cpu(tmp_path):
    """The whole engine (memory profile, CUDA graphs, expanded prefill, absorbed decode) on a tiny DeepSeek-V3 at
    head dims that are not powers of two: the same greedy tokens as the CPU twins (fp32). The expanded prefill
    kernel this once ran (24-wide keys padded to 32) hit an illegal memory access here in bf16
    (benchmarks/results/2026-12-06b-h100/); the MLA prefill kernel splits keys into 16 + 8 channels instead."""
    from vdeploy import LLM, SamplingParams
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / "v3", "deepseek_v3", dtype="float32", num_shards=1)
    prompts = [list(range(3, 40)), [7, 8, 9], [200, 1, 2, 3]]
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    tokens = {}
    for device in ("cpu", "cuda"):
        llm = LLM(str(path), device=device, dtype="float32", max_model_len=256, gpu_memory_utilization=0.3)
        try:
            tokens[device] = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]
        finally:
            llm.close()
    assert tokens["cuda"] == tokens["cpu"]


@pytest.mark.parametrize("tokens", [1, 256, 8192])
def test_router_logits_bf16_gemm_matches_float32(tokens):
    """The router GEMM on a bf16 weight with a float32 output (ops.router_weight keeps it so when cuBLAS can) equals
    the float32 GEMM up to summation order, at R1's width."""
    from vdeploy.layers import ops

    torch.manual_seed(tokens)
    x = torch.randn(tokens, 7168, device="cuda").bfloat16()
    weight = (torch.randn(256, 7168, device="cuda") * 0.02).bfloat16()
    kept = ops.router_weight(weight, torch.bfloat16)
    assert kept.dtype == torch.bfloat16, "cuBLAS should take bf16 inputs with a float32 output on this GPU"
    fast, exact = ops.router_logits(x, kept), ops.router_logits(x, weight.float())
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, exact, rtol=1e-4, atol=2e-4)  # logits ~1: float32 sums of 7,168 products


# the fused MoE epilogue (issue 15) at the real expert shapes: experts, intermediate, hidden, top-k, block-FP8
MOE_SHAPES = {"v2-lite": (64, 1408, 2048, 6, False), "r1": (256, 2048, 7168, 8, True)}


@pytest.fixture(scope="module", params=sorted(MOE_SHAPES))
def moe_layer(request):
    """One MoE layer's weights at full width, built once per shape (R1: 11 GB of e4m3, made one expert at a time)."""
    e, i, h, k, fp8 = MOE_SHAPES[request.param]
    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need sm89+")
    gen = torch.Generator(device="cuda").manual_seed(0)
    if not fp8:
        w13 = (torch.randn(e, 2 * i, h, device="cuda", generator=gen) * 0.02).bfloat16()
        w2 = (torch.randn(e, h, i, device="cuda", generator=gen) * 0.02).bfloat16()
        yield request.param, (e, i, h, k), (w13, w2, None, None)
        return
    q13 = torch.empty(e, 2 * i, h, device="cuda", dtype=torch.float8_e4m3fn)
    q2 = torch.empty(e, h, i, device="cuda", dtype=torch.float8_e4m3fn)
    s13 = torch.empty(e, 2 * i // 128, h // 128, device="cuda")
    s2 = torch.empty(e, h // 128, i // 128, device="cuda")
    for ex in range(e):
        q13[ex], s13[ex] = ref.quantize_weight_block(torch.randn(2 * i, h, device="cuda", generator=gen) * 0.02)
        q2[ex], s2[ex] = ref.quantize_weight_block(torch.randn(h, i, device="cuda", generator=gen) * 0.02)
    yield request.param, (e, i, h, k), (q13, q2, s13, s2)


def _moe_loop_dequantizing(x, weights13_2, ids, topk_weights):
    """ref.moe_loop in fp32, each expert's weights dequantized (block FP8) or widened only while it runs."""
    w13, w2, s13, s2 = weights13_2
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for ex in torch.unique(ids).tolist():
        tok, slot = torch.where(ids == ex)
        a = ref.dequantize_weight_block(w13[ex], s13[ex]) if s13 is not None else w13[ex].float()
        b = ref.dequantize_weight_block(w2[ex], s2[ex]) if s2 is not None else w2[ex].float()
        gate, up = (x[tok].float() @ a.t()).chunk(2, dim=-1)
        out.index_add_(0, tok, (torch.nn.functional.silu(gate) * up) @ b.t() * topk_weights[tok, slot, None])
    return out


@pytest.mark.parametrize("t", [1, 64, 512])
def test_fused_moe_epilogue_at_real_shapes(moe_layer, t):
    """Each fusion against the passes it replaced, at V2-Lite (bf16) and R1 (block FP8) shapes: the silu +
    quantization kernel gives the very bits of the separate kernels; the whole layer with the shared output added in
    the top-k sum equals the unfused path (up to torch's own summation order) and the twin."""
    from vdeploy_kernels import fused_moe as fm
    from vdeploy_kernels.activation import silu_and_mul
    from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8
    from vdeploy_kernels.moe_epilogue import silu_and_mul_quant_fp8

    name, (e, i, h, k), weights13_2 = moe_layer
    w13, w2, s13, s2 = weights13_2
    fp8 = s13 is not None
    torch.manual_seed(t)
    x = torch.randn(t, h, device="cuda", dtype=torch.bfloat16)
    ids = torch.rand(t, e, device="cuda").topk(k, dim=-1).indices
    topk_weights = torch.rand(t, k, device="cuda")
    shared = torch.randn(t, h, device="cuda", dtype=torch.bfloat16) * 0.1
    act_h = torch.randn(t * k, 2 * i, device="cuda", dtype=torch.bfloat16) * 2  # an h as GEMM1 writes it
    if fp8:
        q, s = silu_and_mul_quant_fp8(act_h)
        q_sep, s_sep = per_token_group_quant_fp8(silu_and_mul(act_h))
        assert torch.equal(s, s_sep) and torch.equal(q.view(torch.uint8), q_sep.view(torch.uint8))
    out = fm.fused_moe(x, w13, w2, ids, topk_weights, s13, s2, shared_output=shared)
    unfused = fm.fused_moe(x, w13, w2, ids, topk_weights, s13, s2, shared_output=shared, fuse_epilogue=False)
    # the same routed rows; torch may sum the k rows in another fp32 order: now and then one bf16 step apart
    assert (out != unfused).float().mean().item() < 1e-3
    torch.testing.assert_close(out, unfused, rtol=2**-7, atol=1e-3)
    twin = _moe_loop_dequantizing(x, weights13_2, ids, topk_weights) + shared.float()
    assert rel_err(out, twin) < (0.08 if fp8 else 2e-2), name


def test_fused_moe_with_shared_output_replays_in_a_cuda_graph():
    """V2-Lite's layer at 64 rows captured once (tiles, silu-in-GEMM2, top-k sum + shared add), replayed on fresh
    routing and inputs: the eager result every time (no host syncs, no shapes from the data)."""
    from vdeploy_kernels.fused_moe import fused_moe

    e, i, h, k = MOE_SHAPES["v2-lite"][:4]
    t = 64
    w13 = (torch.randn(e, 2 * i, h, device="cuda") * 0.02).bfloat16()
    w2 = (torch.randn(e, h, i, device="cuda") * 0.02).bfloat16()
    x = torch.randn(t, h, device="cuda", dtype=torch.bfloat16)
    ids = torch.rand(t, e, device="cuda").topk(k, dim=-1).indices
    topk_weights, shared = torch.rand(t, k, device="cuda"), torch.randn_like(x)
    fused_moe(x, w13, w2, ids, topk_weights, shared_output=shared)  # compiles outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fused_moe(x, w13, w2, ids, topk_weights, shared_output=shared)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        ids.copy_(torch.rand(t, e, device="cuda").topk(k, dim=-1).indices)
        topk_weights.copy_(torch.rand(t, k, device="cuda"))
        shared.copy_(torch.randn_like(x))
        out.fill_(float("nan"))
        graph.replay()
        assert torch.equal(out, fused_moe(x, w13, w2, ids, topk_weights, shared_output=shared))


@pytest.mark.parametrize("fp8", [False, True])
def test_shared_experts_side_stream_equals_inline_eagerly_and_in_a_cuda_graph(fp8):
    """The shared experts on the side stream (beside the router and the routed experts, joined before the top-k sum)
    give the inline result bit for bit, eagerly and replayed in a CUDA graph on fresh inputs; with block FP8 the
    shared experts' split-K decode GEMMs take tickets on their own stream's counters."""
    from vdeploy.checkpoint.synthetic import tiny_config
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.deepseek import DeepseekMoE
    from vdeploy.models.loader import load_model

    cfg = ModelConfig.from_dict(tiny_config("deepseek_v3", fp8=fp8, overrides={
        "hidden_size": 1024, "moe_intermediate_size": 512, "n_routed_experts": 16, "num_experts_per_tok": 4,
        "n_group": 4, "topk_group": 2, "n_shared_experts": 1}))
    model = load_model(EngineConfig(model="unused", load_format="dummy"), cfg, ParallelState(), "cuda",
                       torch.bfloat16, quiet=True)
    moe = next(m for m in model.modules() if isinstance(m, DeepseekMoE))
    side = moe.side_stream
    assert side is not None and side.max_tokens >= 64

    def inline(x):
        side.max_tokens, saved = 0, side.max_tokens
        try:
            return moe(x)
        finally:
            side.max_tokens = saved

    for t in (1, 64):
        x = torch.randn(t, 1024, device="cuda", dtype=torch.bfloat16)
        assert torch.equal(moe(x), inline(x))  # compiles every kernel outside the capture, too
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = moe(x)
        for _ in range(3):
            x.copy_(torch.randn_like(x))
            out.fill_(float("nan"))
            graph.replay()
            assert torch.equal(out, inline(x))
