"""Parameter estimates and memory plans from the real published configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vdeploy.checkpoint.planner import (
    MIN_USEFUL_CONTEXT,
    estimate_params,
    kv_bytes_per_token_per_layer,
    plan_memory,
    plan_table,
)
from vdeploy.config import ModelConfig

CONFIGS = Path(__file__).resolve().parents[2] / "vdeploy" / "model_configs"
GB = 1000**3
H100_80GB = 85_520_809_984  # 81,559 MiB, as nvidia-smi reports an H100 80GB


def load(name: str) -> ModelConfig:
    return ModelConfig.from_dict(json.loads((CONFIGS / f"{name}.config.json").read_text()))


@pytest.fixture(scope="module")
def r1() -> ModelConfig:
    return load("deepseek-r1")


def test_r1_parameters(r1):
    est = estimate_params(r1)
    assert 670e9 < est.total < 672e9  # "671B"
    assert 13e9 < est.by_component["mtp"] < 15e9  # the ~14B MTP module, not in total
    assert 36.5e9 < est.active < 38.5e9  # "37B activated"
    assert est.by_component["routed_experts"] == 58 * 256 * 3 * 2048 * 7168
    assert est.total == sum(v for k, v in est.by_component.items() if k != "mtp")


@pytest.mark.parametrize("name, billions", [
    ("deepseek-r1-distill-qwen-1.5b", 1.78), ("deepseek-r1-distill-qwen-7b", 7.62),
    ("deepseek-r1-distill-qwen-32b", 32.76), ("deepseek-r1-distill-llama-8b", 8.03),
    ("deepseek-r1-distill-llama-70b", 70.55), ("deepseek-v2-lite", 15.71),
])
def test_published_sizes(name, billions):
    est = estimate_params(load(name))
    assert est.total / 1e9 == pytest.approx(billions, abs=0.01)
    if name == "deepseek-v2-lite":
        assert est.active / 1e9 == pytest.approx(2.66, abs=0.05)  # "2.4B active" + embeddings
    else:
        assert est.active == est.total


def test_r1_does_not_fit_8x80gb_but_fits_8x141gb(r1):
    h100 = plan_memory(r1, tp=8, gpu_memory_bytes=80 * GB)
    assert h100.verdict == "does_not_fit" and h100.kv_tokens_per_gpu == 0 and h100.max_model_len == 0
    assert h100.weight_bytes_per_gpu > 0.9 * 80 * GB
    assert "second node" in h100.advice and "TP 8 × PP 2" in h100.advice and "distill" in h100.advice
    h200 = plan_memory(r1, tp=8, gpu_memory_bytes=141 * GB)
    assert h200.verdict == "fits" and h200.max_model_len == r1.max_position_embeddings
    assert h200.kv_tokens_per_gpu > r1.max_position_embeddings


def test_r1_plan_table_adds_a_second_node(r1):
    plans = plan_table(r1, 80 * GB)
    assert [(p.tp, p.pp) for p in plans] == [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2)]
    assert [p.verdict for p in plans] == ["does_not_fit"] * 4 + ["fits"]
    assert plans[-1].num_gpus == 16
    # 8×141 GB fits at TP 8, so no pipeline stage is proposed
    assert [(p.tp, p.pp, p.verdict) for p in plan_table(r1, 141 * GB)][-1] == (8, 1, "fits")


def test_mla_kv_cache_is_not_split_and_latent_projections_are_replicated(r1):
    tp1, tp8 = (plan_memory(r1, tp=t, gpu_memory_bytes=1000 * GB) for t in (1, 8))
    per_layer = (512 + 64) * 2
    assert kv_bytes_per_token_per_layer(r1, 8) == per_layer
    assert tp1.kv_bytes_per_token_per_gpu == tp8.kv_bytes_per_token_per_gpu == 61 * per_layer
    # q_a / kv_a projections (+ scales) and the routers are whole on every rank
    q_a_kv_a = 61 * ((1536 + 576) * 7168 + (12 + 5) * 56 * 4)
    routers = 58 * (256 * 7168 * 2 + 256 * 4)
    assert tp8.replicated_bytes_per_gpu >= q_a_kv_a + routers
    assert tp8.replicated_bytes_per_gpu == tp1.replicated_bytes_per_gpu
    assert tp8.weight_bytes_per_gpu > tp1.weight_bytes_per_gpu / 8  # replication costs something


def test_pipeline_stages_halve_kv_and_weights(r1):
    pp1 = plan_memory(r1, tp=8, gpu_memory_bytes=1000 * GB)
    pp2 = plan_memory(r1, tp=8, pp=2, gpu_memory_bytes=1000 * GB)
    assert pp2.kv_bytes_per_token_per_gpu == 31 * 576 * 2  # the larger stage holds 31 of 61 layers
    assert 0.45 < pp2.weight_bytes_per_gpu / pp1.weight_bytes_per_gpu < 0.56


def test_gqa_kv_heads_replicate_beyond_their_count():
    qwen = load("deepseek-r1-distill-qwen-1.5b")  # 12 heads, 2 KV heads, head dim 128, 28 layers
    per_tp = {tp: plan_memory(qwen, tp=tp, gpu_memory_bytes=80 * GB).kv_bytes_per_token_per_gpu for tp in (1, 2, 4)}
    assert per_tp == {1: 28 * 2 * 2 * 128 * 2, 2: 28 * 2 * 1 * 128 * 2, 4: 28 * 2 * 1 * 128 * 2}
    tp4 = plan_memory(qwen, tp=4, gpu_memory_bytes=80 * GB)
    assert tp4.replicated_bytes_per_gpu > 0  # K/V projections: one head's worth on each of 4 ranks


def test_fp8_without_tensor_cores_doubles_weights(r1):
    fp8 = plan_memory(r1, tp=8, pp=2, gpu_memory_bytes=141 * GB)
    bf16 = plan_memory(r1, tp=8, pp=2, gpu_memory_bytes=141 * GB, fp8_tensor_cores=False)
    assert 1.9 < bf16.weight_bytes_per_gpu / fp8.weight_bytes_per_gpu < 2.0
    assert plan_memory(r1, tp=8, gpu_memory_bytes=141 * GB, fp8_tensor_cores=False).verdict == "does_not_fit"


def test_measured_weight_bytes_scale_the_plan(r1):
    base = plan_memory(r1, tp=8, gpu_memory_bytes=141 * GB)
    estimate_total = plan_memory(r1, tp=1, gpu_memory_bytes=10**13).weight_bytes_per_gpu
    doubled = plan_memory(r1, tp=8, gpu_memory_bytes=141 * GB, weight_bytes=2 * estimate_total)
    assert doubled.weight_bytes_per_gpu == pytest.approx(2 * base.weight_bytes_per_gpu, rel=1e-6)


def test_distills_plan_sensibly():
    llama70 = load("deepseek-r1-distill-llama-70b")
    plans = {p.tp: p for p in plan_table(llama70, H100_80GB)}
    assert plans[1].verdict == "does_not_fit" and "it fits on 2 GPUs as TP 2" in plans[1].advice
    assert "distill" not in plans[1].advice  # it is a distill already
    assert plans[2].verdict == "fits_limited" and MIN_USEFUL_CONTEXT <= plans[2].max_model_len < 131072
    assert plans[2].max_model_len % 16 == 0 and "--max-model-len" in plans[2].advice
    assert plans[4].verdict == plans[8].verdict == "fits"
    qwen7 = load("deepseek-r1-distill-qwen-7b")  # 28 heads: TP 8 cannot shard it
    assert [p.tp for p in plan_table(qwen7, 24 * GB)] == [1, 2, 4]
    assert plan_table(qwen7, 24 * GB)[0].verdict in ("fits", "fits_limited")
    bad = plan_memory(qwen7, tp=8, gpu_memory_bytes=80 * GB)
    assert bad.verdict == "does_not_fit" and "does not divide the 28 attention heads" in bad.advice


def test_requested_context_and_fp8_kv_cache():
    qwen32 = load("deepseek-r1-distill-qwen-32b")
    full = plan_memory(qwen32, tp=1, gpu_memory_bytes=H100_80GB)
    assert full.verdict == "fits_limited" and 16384 < full.max_model_len < 131072
    short = plan_memory(qwen32, tp=1, gpu_memory_bytes=H100_80GB, max_model_len=16384)
    assert short.verdict == "fits" and short.max_model_len == 16384
    fp8_kv = plan_memory(qwen32, tp=1, gpu_memory_bytes=H100_80GB, kv_cache_dtype_bytes=1)
    assert fp8_kv.kv_bytes_per_token_per_gpu * 2 == full.kv_bytes_per_token_per_gpu
    assert fp8_kv.kv_tokens_per_gpu >= 2 * full.kv_tokens_per_gpu - 1
