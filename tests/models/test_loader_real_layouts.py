"""The published R1-distill configs at their real sizes, on the meta device (no memory): every checkpoint tensor
of the Hugging Face layout finds its parameter, every rank's slice has the right shape for TP 1-8, and nothing
expected is left unloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vdeploy
from vdeploy.config import ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import WeightFiller, build_on_meta

CONFIGS = Path(vdeploy.__file__).parent / "model_configs"
DISTILLS = ["deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-32b",
            "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b"]


class MetaSlice:
    """A checkpoint tensor of the given shape whose reads produce meta tensors of the requested window."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def __getitem__(self, window: tuple[slice, ...]) -> torch.Tensor:
        return torch.empty([s.stop - s.start for s in window], device="meta")


def hf_layout(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a Hugging Face Llama/Qwen2 checkpoint."""
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_heads * d, cfg.num_kv_heads * d
    tensors = {"model.embed_tokens.weight": (cfg.vocab_size, h), "model.norm.weight": (h,)}
    if not cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = (cfg.vocab_size, h)
    for layer in range(cfg.num_layers):
        p = f"model.layers.{layer}."
        tensors.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i),
        })
        if cfg.attention_bias:
            tensors.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                            p + "self_attn.v_proj.bias": (kv,)})
    return tensors


@pytest.mark.parametrize("name", DISTILLS)
def test_real_layout_loads_on_every_tp_degree(name):
    cfg = ModelConfig.from_path(CONFIGS / f"{name}.config.json")
    layout = hf_layout(cfg)
    degrees = [tp for tp in (1, 2, 4, 8) if cfg.num_heads % tp == 0]
    assert degrees[-1] >= 2
    for tp in degrees:
        rank = tp - 1  # the last rank: padded vocabulary rows, last head group
        model = build_on_meta(cfg, ParallelState(rank, tp), torch.bfloat16)
        filler = WeightFiller(model)
        for tensor_name, shape in layout.items():
            filler.load("meta", tensor_name, MetaSlice(shape))
        assert filler.missing() == [], (name, tp)
        attn = model.model.layers[0].self_attn
        assert attn.attn.num_heads == cfg.num_heads // tp
        assert attn.attn.num_kv_heads == max(cfg.num_kv_heads // tp, 1)
        total = sum(p.numel() for p in model.parameters())
        assert total < sum(torch.Size(s).numel() for s in layout.values()) / tp * 1.3 + 1  # only this rank's share
