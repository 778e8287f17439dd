"""Our Llama / Qwen2 against Hugging Face transformers on the same tiny random fp32 checkpoints: logits for a
batch of prompts, chunked prefill + decode through the paged cache, and greedy tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)
VARIANTS = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**TINY, rope_theta=10000.0)),
    "llama3_tied": lambda: LlamaForCausalLM(LlamaConfig(
        **TINY, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16})),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**TINY, rope_theta=1000000.0)),
}
PROMPTS = {"a": [3, 17, 250, 9, 41, 77, 5, 300, 12, 8, 64, 31, 2, 99], "b": [7, 7, 8], "c": [200],
           "d": list(range(40, 61))}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(1234)
    hf = VARIANTS[request.param]().float().eval()
    with torch.no_grad():  # non-trivial norms and biases so that every weight matters
        for name, param in hf.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.08)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    model_config = ModelConfig.from_path(path)
    ours = load_model(EngineConfig(model=str(path)), model_config, ParallelState(), "cpu", "float32", quiet=True)
    return request.param, hf, ours, model_config


def _runner(ours, cfg: ModelConfig) -> ReferenceRunner:
    return ReferenceRunner(ours, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                           num_blocks=64, block_size=4)


def _hf_logits(hf, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([tokens])).logits[0].float()  # [L, V]


def test_config_normalised(checkpoint):
    name, hf, ours, cfg = checkpoint
    assert cfg.family == ("qwen2" if name == "qwen2" else "llama")
    assert cfg.attention_bias == (name == "qwen2")
    assert cfg.tie_word_embeddings == (name == "llama3_tied")
    if name == "llama3_tied":
        assert cfg.rope_scaling["rope_type"] == "llama3"
        assert ours.lm_head is ours.model.embed_tokens


def test_batched_prefill_logits_match_hf(checkpoint):
    _, hf, ours, cfg = checkpoint
    logits = _runner(ours, cfg).step(PROMPTS)
    for seq_id, tokens in PROMPTS.items():
        assert logits[seq_id].dtype == torch.float32
        assert logits[seq_id].shape == (len(tokens), cfg.vocab_size)
        torch.testing.assert_close(logits[seq_id], _hf_logits(hf, tokens), atol=2e-5, rtol=1e-4)


def test_chunked_prefill_and_mixed_decode_match_hf(checkpoint):
    _, hf, ours, cfg = checkpoint
    runner = _runner(ours, cfg)
    a, d = PROMPTS["a"], PROMPTS["d"]
    first = runner.step({"a": a[:5], "d": d[:9]})  # two chunks interleaved: non-contiguous blocks
    second = runner.step({"a": a[5:], "d": d[9:]})
    third = runner.step({"a": [11], "d": [12], "b": PROMPTS["b"]})  # decodes batched with a new prefill
    full_a, full_d = _hf_logits(hf, a + [11]), _hf_logits(hf, d + [12])
    torch.testing.assert_close(torch.cat([first["a"], second["a"], third["a"]]), full_a, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([first["d"], second["d"], third["d"]]), full_d, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(third["b"], _hf_logits(hf, PROMPTS["b"]), atol=2e-5, rtol=1e-4)


def test_greedy_tokens_match_hf(checkpoint):
    _, hf, ours, cfg = checkpoint
    steps = 16
    ours_out = _runner(ours, cfg).greedy(PROMPTS, steps)
    for seq_id, tokens in PROMPTS.items():
        expected = list(tokens)
        for _ in range(steps):
            expected.append(int(_hf_logits(hf, expected)[-1].argmax()))
        assert ours_out[seq_id] == expected[len(tokens):], seq_id
