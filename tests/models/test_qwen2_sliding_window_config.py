"""Qwen2's use_sliding_window: transformers slides only the layers at or past max_window_layers (or those
layer_types names), and a window as long as the context excludes nothing. Such configs attend fully in every layer
and must load and match transformers; a window that really slides some layer is refused (no sliding attention)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, use_sliding_window=True)
PROMPT = [(5 * i + 1) % 320 for i in range(40)]  # longer than the 16-token window below


def _save_and_load(tmp_path, **kw):
    torch.manual_seed(5)
    hf = Qwen2ForCausalLM(Qwen2Config(**TINY, **kw)).float().eval()
    hf.save_pretrained(tmp_path)
    cfg = ModelConfig.from_path(tmp_path)
    return hf, cfg, lambda: load_model(EngineConfig(model=str(tmp_path)), cfg, ParallelState(), "cpu", "float32",
                                       quiet=True)


@pytest.mark.parametrize("kw", [dict(sliding_window=16, max_window_layers=2),  # no layer at or past 2
                                dict(sliding_window=64, max_window_layers=0)],  # the window spans the context
                         ids=["no_sliding_layer", "window_spans_context"])
def test_full_attention_configs_load_and_match_hf(tmp_path, kw):
    hf, cfg, load = _save_and_load(tmp_path, **kw)
    ours = load()
    runner = ReferenceRunner(ours, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=16, block_size=4)
    with torch.no_grad():
        expected = hf(torch.tensor([PROMPT])).logits[0]
    torch.testing.assert_close(runner.step({"p": PROMPT})["p"], expected, atol=2e-5, rtol=1e-4)


def test_a_sliding_layer_is_refused(tmp_path):
    _, _, load = _save_and_load(tmp_path, sliding_window=16, max_window_layers=1)
    with pytest.raises(ConfigError, match="sliding-window"):
        load()
