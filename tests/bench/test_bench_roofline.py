"""The roofline arithmetic of benchmarks/engine: exact small cases, and the published H100 anchors in
../shared/README.md (bandwidth bound ~188 tok/s for the Llama-8B shape at 3.02 TB/s; vLLM's 8 x 4096 prefill in
0.804 s = ~0.77 of a 790 TFLOP/s bf16 peak; vLLM's 149 tok/s = 0.79 of the bound)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vdeploy.bench.model_cost import cost_from_config
from vdeploy.bench.roofline import (
    ModelCost,
    causal_attention_flops,
    decode_step_bytes,
    prefill_flops,
    single_stream_decode_bound,
)
from vdeploy.config import ModelConfig
from vdeploy.engine.kv_cache_spec import KVCacheSpec
from vdeploy.model_configs import config_path


def llama8b_cost() -> ModelCost:
    cfg = ModelConfig.from_path(config_path("deepseek-r1-distill-llama-8b"))
    kv = KVCacheSpec.for_model(cfg, block_size=16, dtype="bfloat16").bytes_per_token
    return cost_from_config(cfg, dtype_bytes=2, kv_bytes_per_token=kv)


def small_cost(tied: bool) -> ModelCost:
    return ModelCost(param_bytes=2 * 1000, num_params=1000, embedding_params=100, lm_head_params=0 if tied else 100,
                     tied_embeddings=tied, kv_bytes_per_token=8, num_layers=2, num_heads=4, head_dim=16,
                     v_head_dim=16, hidden_size=10)


def test_decode_bound_without_kv_is_bandwidth_over_weight_bytes():
    assert single_stream_decode_bound(16_000, 0, prompt_len=5, output_len=11, bandwidth_bytes_per_s=32_000) == 2.0


def test_decode_bound_counts_each_steps_context():
    # output 3 tokens after a 4-token prompt: decode steps attend over 4 + 1 and 4 + 2 cached tokens
    steps = decode_step_bytes(100, 10, [5]) + decode_step_bytes(100, 10, [6])
    assert steps == 150 + 160
    assert single_stream_decode_bound(100, 10, 4, 3, 310.0) == pytest.approx(2 / 1.0)
    with pytest.raises(ValueError):
        single_stream_decode_bound(100, 10, 4, 1, 310.0)


def test_llama8b_numbers_match_the_published_h100_anchors():
    cost = llama8b_cost()
    assert cost.num_params == 8_030_261_248  # Llama-3.1-8B
    assert cost.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2  # 128 KiB
    bound = single_stream_decode_bound(cost.param_bytes, cost.kv_bytes_per_token, 128, 512, 3.02e12)
    assert 187 < bound < 189
    assert 149 / single_stream_decode_bound(cost.param_bytes, cost.kv_bytes_per_token, 128, 1024, 3.02e12) == \
        pytest.approx(0.79, abs=0.01)
    # the strict bound leaves out the embedding table, of which decode reads one row per token
    strict = single_stream_decode_bound(cost.decode_weight_bytes_strict, cost.kv_bytes_per_token, 128, 512, 3.02e12)
    assert strict > bound and cost.param_bytes - cost.decode_weight_bytes_strict == 128256 * 4096 * 2
    flops = prefill_flops(cost, [4096] * 8)
    assert flops["total"] / 0.804 / 790e12 == pytest.approx(0.77, abs=0.01)


def test_attention_flops_match_the_causal_formula():
    layers, heads, dim, t = 32, 32, 128, 4096
    assert causal_attention_flops(layers, heads, dim, dim, [t]) == 2 * 2 * layers * t * t * heads * dim // 2
    assert causal_attention_flops(layers, heads, dim, dim, [t, t]) == 2 * causal_attention_flops(
        layers, heads, dim, dim, [t])


@pytest.mark.parametrize("tied", [False, True])
def test_embedding_handling_tied_and_untied(tied):
    cost = small_cost(tied)
    flops = prefill_flops(cost, [3, 5])
    # linear layers see every token; the lm_head (or the tied table) only the last token of each prompt
    assert flops["linear"] == 2 * (1000 - 100 - (0 if tied else 100)) * 8
    assert flops["lm_head"] == 2 * 100 * 2
    assert flops["total"] == flops["linear"] + flops["lm_head"] + flops["attention"]
    # a tied table is read whole by the logits matmul every step; an untied one only row by row
    assert cost.decode_weight_bytes_strict == (2000 if tied else 1800)


def test_moe_decode_reads_only_the_experts_the_batch_hits():
    """R1 with 8 layers (3 dense + 5 MoE): batch 1 picks 8 of 256 experts per MoE layer, so the step reads a small
    part of the 5 layers' experts; a big batch hits nearly all of them."""
    import json

    raw = json.loads(config_path("deepseek-r1").read_text())
    raw.update(num_hidden_layers=8)
    cfg = ModelConfig.from_dict(raw)
    cost = cost_from_config(cfg, dtype_bytes=1, kv_bytes_per_token=576 * 2 * 8)
    per_layer = 256 * 3 * 7168 * 2048
    assert cost.routed_expert_bytes == 5 * per_layer
    one = cost.decode_weight_bytes(1)
    assert one == pytest.approx(cost.decode_weight_bytes_strict - 5 * per_layer * (1 - (1 - (1 - 1 / 256) ** 8)))
    assert cost.decode_weight_bytes(1024) == pytest.approx(cost.decode_weight_bytes_strict, rel=1e-3)
    assert cost.decode_weight_bytes(1) < 0.25 * cost.decode_weight_bytes_strict
    dense = llama8b_cost()
    assert dense.decode_weight_bytes(1) == dense.decode_weight_bytes_strict


def test_moe_prefill_flops_count_only_the_experts_each_token_takes():
    """A token of R1 multiplies its 8 of 256 routed experts, not all of them: prefill's linear FLOPs are those of the
    active parameters (the planner's count), less the embedding lookup and the lm_head."""
    import json

    from vdeploy.checkpoint.planner import estimate_params

    raw = json.loads(config_path("deepseek-r1").read_text())
    raw.update(num_hidden_layers=8)
    cfg = ModelConfig.from_dict(raw)
    cost = cost_from_config(cfg, dtype_bytes=1, kv_bytes_per_token=576 * 8)
    table = cfg.vocab_size * cfg.hidden_size
    inactive = 5 * 256 * 3 * 7168 * 2048 * (1 - 8 / 256)
    assert cost.linear_params == cost.num_params - 2 * table - round(inactive)
    assert cost.linear_params == pytest.approx(estimate_params(cfg).active - 2 * table, rel=1e-3)
    assert prefill_flops(cost, [1000])["linear"] == 2 * cost.linear_params * 1000
    dense = llama8b_cost()
    assert dense.linear_params == dense.num_params - dense.embedding_params - dense.lm_head_params
