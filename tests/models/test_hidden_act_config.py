"""config.json's hidden_act: transformers builds the MLP's gate activation from it (ACT2FN); our MLPs compute SiLU
only. A checkpoint with another activation must be refused, not served with SiLU (silently other logits than
transformers on the same weights); SiLU's other name, swish, must load and match transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from tests.deepseek.deepseek_fixtures import tiny_v2_config
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128)
CONFIGS = {
    "llama": lambda act: LlamaConfig(**TINY, hidden_act=act),
    "qwen2": lambda act: Qwen2Config(**TINY, hidden_act=act),
    "deepseek_v2": lambda act: tiny_v2_config(hidden_act=act, max_position_embeddings=128),
}


def _save(config, path):
    torch.manual_seed(3)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    hf.save_pretrained(path)
    return hf.eval()


def _load(path):
    cfg = ModelConfig.from_path(path)
    return load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "float32", quiet=True), cfg


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_other_activation_is_refused(tmp_path, family):
    _save(CONFIGS[family]("gelu_pytorch_tanh"), tmp_path)
    with pytest.raises(ConfigError, match="hidden_act"):
        _load(tmp_path)


def test_swish_is_silu(tmp_path):
    hf = _save(CONFIGS["llama"]("swish"), tmp_path)
    ours, cfg = _load(tmp_path)
    prompt = [3, 17, 250, 9, 41, 77, 5]
    runner = ReferenceRunner(ours, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=8, block_size=4)
    with torch.no_grad():
        expected = hf(torch.tensor([prompt])).logits[0]
    torch.testing.assert_close(runner.step({"p": prompt})["p"], expected, atol=2e-5, rtol=1e-4)
