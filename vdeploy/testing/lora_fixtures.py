"""A tiny random Llama and PEFT LoRA adapters for it, with the Hugging Face + peft references the LoRA tests (and
benchmarks) compare against: each adapter merged into a copy of the base model (peft's merge_and_unload)."""

from __future__ import annotations

import copy
from pathlib import Path

# 6 heads / 3 KV heads / intermediate 96: divisible by a tensor-parallel size of 3
TINY_LLAMA = dict(vocab_size=160, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=3, max_position_embeddings=256, rope_theta=10000.0)


def write_tiny_llama(path: Path, seed: int = 0, **overrides):
    """Save a tiny fp32 Llama (TINY_LLAMA, with `overrides`) with non-trivial weights at `path`; returns the HF
    model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    hf = LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides})).float().eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.08)
    hf.save_pretrained(path)
    return hf


def write_peft_adapter(base, path: Path, *, r: int, lora_alpha: int, target_modules: list[str], seed: int,
                       use_rslora: bool = False, std: float = 0.15):
    """Save a PEFT LoRA adapter for `base` (random A and B: peft's default zero B would change nothing) at `path`;
    returns the reference: a copy of `base` with the adapter merged in."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=0.0,
                        use_rslora=use_rslora, init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, std)
    peft_model.save_pretrained(path)
    return peft_model.merge_and_unload().eval()


def hf_greedy(model, prompt: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and each one's log-probability under `model`."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                             do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    tokens = out.sequences[0, len(prompt):].tolist()
    logprobs = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.logits, tokens)]
    return tokens, logprobs
