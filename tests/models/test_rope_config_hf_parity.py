"""RoPE settings that real config.json files write in more than one way, against Hugging Face transformers on the
same tiny random fp32 weights: the config as the repository ships it (classic `rope_scaling` + `rope_theta` keys),
HF reading that same file, our logits at every position of a prompt longer than the pre-scaling context, and
greedy tokens through vdeploy.LLM."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from vdeploy import LLM, SamplingParams
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128)
PROMPT = [(7 * i + 3) % 320 for i in range(60)]  # past every original context below (16 / 32 positions)

# name -> (HF config class, rope_theta, rope_scaling as the file has it, other top-level keys)
VARIANTS = {
    # Qwen2.5's model card spelling without the pre-scaling length: HF takes max_position_embeddings
    "yarn_without_original_context": (Qwen2Config, 1e6, {"type": "yarn", "factor": 4.0}, {}),
    "llama3_without_original_context": (
        LlamaConfig, 500000.0,
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}, {}),
    # a top-level original_max_position_embeddings wins over the one inside rope_scaling (HF's rule)
    "yarn_top_level_original_context": (
        LlamaConfig, 10000.0, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
        {"original_max_position_embeddings": 16}),
    # truncate: false keeps YaRN's correction range unrounded
    "yarn_without_truncation": (
        LlamaConfig, 10000.0,
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "truncate": False}, {}),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def checkpoint(request, tmp_path_factory):
    config_cls, theta, scaling, extra = VARIANTS[request.param]
    torch.manual_seed(7)
    hf = AutoModelForCausalLM.from_config(config_cls(**TINY), dtype=torch.float32)
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" in name:  # non-trivial norms so that every weight matters
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.08)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.pop("rope_parameters", None)  # the file as the repository ships it
    config.update(rope_theta=theta, rope_scaling=scaling, **extra)
    (path / "config.json").write_text(json.dumps(config))
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()  # HF reads the same file
    return path, hf


def test_prefill_logits_match_hf(checkpoint):
    path, hf = checkpoint
    cfg = ModelConfig.from_path(path)
    ours = load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "float32", quiet=True)
    runner = ReferenceRunner(ours, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=32, block_size=4)
    logits = runner.step({"p": PROMPT})["p"]
    with torch.no_grad():
        expected = hf(torch.tensor([PROMPT])).logits[0]
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-4)


def test_greedy_tokens_through_llm_match_hf(checkpoint):
    path, hf = checkpoint
    steps = 8
    expected = list(PROMPT)
    with torch.no_grad():
        for _ in range(steps):
            expected.append(int(hf(torch.tensor([expected])).logits[0, -1].argmax()))
    with LLM(str(path), dtype="float32", device="cpu", enforce_eager=True) as llm:
        out = llm.generate([PROMPT], SamplingParams(temperature=0, max_tokens=steps, ignore_eos=True))
    assert list(out[0].outputs[0].token_ids) == expected[len(PROMPT):]
