"""Which profile a model gets on a machine, and why the others lost."""

from __future__ import annotations

import pytest
from foundation_fakes import L4_BYTES, gpu_box, h100_box, h200_box, no_gpu
from foundation_reference_configs import REFERENCE_CONFIGS

from vdeploy.config import ModelConfig
from vdeploy.profiles import load_profiles, select_profile


@pytest.fixture(scope="module")
def profiles():
    return load_profiles(env={})


def cfg(name: str) -> ModelConfig:
    return ModelConfig.from_dict(REFERENCE_CONFIGS[name])


def l4():
    return gpu_box(1, "NVIDIA L4", L4_BYTES, (8, 9))


def two_nodes_h100():
    hw = h100_box(8)
    hw.nodes = 2
    return hw


@pytest.mark.parametrize(("model", "machine", "expected"), [
    ("deepseek-r1", h200_box, "deepseek-r1-8xh200"),
    ("deepseek-r1", two_nodes_h100, "deepseek-r1-2x8xh100"),
    ("deepseek-r1", lambda: h100_box(8), None),  # FP8 weights exceed 8 x 80 GB: no single-node H100 profile
    ("deepseek-r1-distill-qwen-7b", l4, "r1-distill-qwen-7b-1x24gb"),
    ("deepseek-r1-distill-qwen-7b", lambda: h100_box(1), "r1-distill-qwen-7b-1x80gb"),
    ("deepseek-r1-distill-llama-8b", l4, "r1-distill-llama-8b-1x24gb"),
    ("deepseek-r1-distill-qwen-1.5b", l4, "r1-distill-qwen-1.5b-1x24gb"),
    ("deepseek-r1-distill-qwen-1.5b", no_gpu, "demo-cpu"),
    ("deepseek-r1-distill-qwen-32b", l4, None),
    ("deepseek-r1-distill-qwen-32b", lambda: h100_box(1), "r1-distill-qwen-32b-1x80gb"),
    ("deepseek-r1-distill-qwen-32b", lambda: h100_box(2), "r1-distill-qwen-32b-2x80gb"),
    ("deepseek-r1-distill-qwen-32b", lambda: h100_box(8), "r1-distill-qwen-32b-4x80gb"),
    ("deepseek-r1-distill-llama-70b", lambda: h100_box(1), None),
    ("deepseek-r1-distill-llama-70b", lambda: h100_box(2), "r1-distill-llama-70b-2x80gb"),
    ("deepseek-r1-distill-llama-70b", h200_box, "r1-distill-llama-70b-4x80gb"),
    ("deepseek-v2-lite", lambda: h100_box(1), "deepseek-v2-lite-1x80gb"),
    ("deepseek-v2-lite", no_gpu, None),
])
def test_selection(profiles, model, machine, expected):
    selection = select_profile(cfg(model), machine(), profiles=profiles)
    assert (selection.profile.name if selection.profile else None) == expected
    assert selection.reasons
    assert selection.rejected == []  # only filled with explain=True


def test_old_gpu_rejected_for_compute_capability(profiles):
    t4 = gpu_box(1, "Tesla T4", 40 << 30, (7, 5))  # pretend it had the memory: sm75 still has no bf16
    selection = select_profile(cfg("deepseek-r1-distill-qwen-1.5b"), t4, explain=True, profiles=profiles)
    assert selection.profile is None
    why = dict(selection.rejected)["r1-distill-qwen-1.5b-1x24gb"]
    assert "compute capability 8" in why and "7.5" in why


def test_explain_says_why_each_other_profile_lost(profiles):
    selection = select_profile(cfg("deepseek-r1-distill-qwen-32b"), h100_box(8), explain=True, profiles=profiles)
    why = dict(selection.rejected)
    assert selection.profile.name == "r1-distill-qwen-32b-4x80gb"
    assert set(why) == {p.name for p in profiles} - {"r1-distill-qwen-32b-4x80gb"}
    assert why["r1-distill-qwen-32b-2x80gb"] == "matches, but r1-distill-qwen-32b-4x80gb uses more GPUs"
    assert "architecture Qwen2ForCausalLM is not one of LlamaForCausalLM" in why["r1-distill-llama-8b-1x80gb"]
    assert "below its minimum 6B" not in why["r1-distill-qwen-7b-1x80gb"]
    assert "above its maximum 8.5B" in why["r1-distill-qwen-7b-1x80gb"]
    assert why["demo-cpu"] == "32.8B parameters is above its maximum 2B"
    assert any("ranked first of 3" in r for r in selection.reasons)
    assert 32 < selection.params_b < 33.5


def test_bigger_gpus_win_among_single_gpu_profiles(profiles):
    selection = select_profile(cfg("deepseek-r1-distill-llama-8b"), h100_box(1), explain=True, profiles=profiles)
    assert selection.profile.name == "r1-distill-llama-8b-1x80gb"
    assert dict(selection.rejected)["r1-distill-llama-8b-1x24gb"].endswith("targets bigger GPUs")


def test_r1_on_one_h100_node_points_at_nodes(profiles):
    selection = select_profile(cfg("deepseek-r1"), h100_box(8), explain=True, profiles=profiles)
    assert "needs 2 nodes" in dict(selection.rejected)["deepseek-r1-2x8xh100"]
    assert "needs 140 GB per GPU" in dict(selection.rejected)["deepseek-r1-8xh200"]
    assert "built-in defaults" in selection.reasons[0]


def test_params_override_and_quantization(profiles):
    bf16_r1 = {k: v for k, v in REFERENCE_CONFIGS["deepseek-r1"].items() if k != "quantization_config"}
    selection = select_profile(ModelConfig.from_dict(bf16_r1), h200_box(), explain=True, profiles=profiles,
                               params_b=671.0)
    assert selection.profile is None
    assert "quantization 'none'" in dict(selection.rejected)["deepseek-r1-8xh200"]
