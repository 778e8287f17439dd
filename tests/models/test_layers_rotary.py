"""RoPE frequencies against transformers' own implementations (the oracle), and the rotary module's layouts."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from vdeploy.errors import ConfigError
from vdeploy.layers.rotary import RotaryEmbedding, compute_cos_sin_cache, compute_inv_freq, yarn_get_mscale

HEAD_DIM, THETA = 64, 10000.0
SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192},
    "yarn_deepseek": {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    "yarn_plain": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048},
}


@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_inv_freq_and_attention_factor_match_transformers(name):
    scaling = SCALINGS[name]
    max_pos = int(scaling.get("original_max_position_embeddings", 2048) * scaling["factor"])
    hf_config = LlamaConfig(hidden_size=HEAD_DIM * 4, num_attention_heads=4, max_position_embeddings=max_pos,
                            rope_parameters={"rope_theta": THETA, **scaling})
    hf_inv_freq, hf_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](hf_config, "cpu")
    inv_freq, factor = compute_inv_freq(HEAD_DIM, THETA, scaling)
    torch.testing.assert_close(inv_freq.float(), hf_inv_freq.float(), rtol=1e-6, atol=0)
    assert factor == pytest.approx(hf_factor, rel=1e-9)


def test_yarn_mscale_ratio_cancels_when_equal():
    assert compute_inv_freq(HEAD_DIM, THETA, SCALINGS["yarn_deepseek"])[1] == pytest.approx(1.0)
    assert yarn_get_mscale(40.0, 1.0) == pytest.approx(0.1 * math.log(40.0) + 1.0)
    assert yarn_get_mscale(1.0, 1.0) == 1.0


def test_unsupported_scaling_is_a_config_error():
    with pytest.raises(ConfigError, match="dynamic"):
        RotaryEmbedding(HEAD_DIM, HEAD_DIM, 16, THETA, {"rope_type": "dynamic", "factor": 2.0})


def test_cache_layout_is_cos_then_sin():
    cache = compute_cos_sin_cache(8, 5, THETA, None)
    inv_freq = 1.0 / THETA ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    angles = torch.arange(5, dtype=torch.float64)[:, None] * inv_freq
    assert cache.dtype == torch.float32 and cache.shape == (5, 8)
    torch.testing.assert_close(cache, torch.cat([angles.cos(), angles.sin()], dim=-1).float())


def _complex_rotate(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Interleaved-pair RoPE as complex multiplication: (x0 + i x1) * e^{i pos theta}."""
    pairs = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())  # [T, H, D/2]
    rot = torch.polar(torch.ones(len(positions), len(inv_freq), dtype=torch.float64),
                      positions[:, None].double() * inv_freq)[:, None, :]
    return torch.view_as_real(pairs * rot).flatten(-2).float()


def test_interleaved_style_matches_complex_rotation():
    rope = RotaryEmbedding(16, 16, 32, THETA, is_neox_style=False)
    q, k, positions = torch.randn(6, 3, 16), torch.randn(6, 1, 16), torch.tensor([0, 1, 2, 9, 17, 31])
    inv_freq = compute_inv_freq(16, THETA, None)[0]
    q_out, k_out = rope(positions, q.clone(), k.clone())
    torch.testing.assert_close(q_out, _complex_rotate(q, positions, inv_freq), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_out, _complex_rotate(k, positions, inv_freq), atol=1e-5, rtol=1e-5)


def test_partial_rotary_leaves_the_tail_untouched():
    rope = RotaryEmbedding(16, 8, 32, THETA)
    q, k, positions = torch.randn(4, 2 * 16), torch.randn(4, 16), torch.tensor([0, 3, 5, 7])
    q_out, k_out = rope(positions, q, k)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    torch.testing.assert_close(q_out.view(4, 2, 16)[..., 8:], q.view(4, 2, 16)[..., 8:])
    assert not torch.allclose(q_out.view(4, 2, 16)[1:, :, :8], q.view(4, 2, 16)[1:, :, :8])
    torch.testing.assert_close(q_out[0], q[0])  # position 0 is the identity
