"""Test helpers for the worker tests: tiny HF-saved checkpoints and a minimal greedy driver over an Executor
(fixed contiguous blocks per request, no scheduler), so executors are tested without the engine."""

from __future__ import annotations

from pathlib import Path

import torch

from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, ParallelConfig, SchedulerConfig
from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams

BLOCK_SIZE = 4


def save_tiny_checkpoint(path: Path, family: str, seed: int = 0, **config_overrides) -> Path:
    """A random fp32 Llama or Qwen2 with 8 heads / 4 KV heads (divisible by TP 2 and 4), saved by transformers.
    `config_overrides` replace HF config fields (e.g. a GPU-friendly head dim)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    common.update(config_overrides)
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, rope_theta=10000.0))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, rope_theta=10000.0, use_sliding_window=False))
    with torch.no_grad():  # HF inits q/k/v biases to zero; random ones check that TP shards them right
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.2)
    model.to(torch.float32).save_pretrained(path, safe_serialization=True)
    return path


def engine_config(path: Path, tp: int = 1, **overrides) -> EngineConfig:
    cfg = EngineConfig(
        model=str(path),
        dtype="float32",
        device="cpu",
        cache=CacheConfig(block_size=BLOCK_SIZE, num_gpu_blocks_override=128),
        scheduler=SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256, max_model_len=256),
        parallel=ParallelConfig(tensor_parallel_size=tp),
    )
    return cfg.with_overrides(**overrides)


def greedy_generate(executor, prompts: list[list[int]], num_steps: int, chunk: int | None = None,
                    blocks_per_request: int = 16) -> list[list[int]]:
    """Greedy tokens for every prompt: prefill (in chunks of `chunk` tokens when given) then decode, batched."""
    greedy = SamplingParams(temperature=0.0, max_tokens=None)
    outputs: list[list[int]] = [[] for _ in prompts]
    computed = [0] * len(prompts)
    blocks = [list(range(i * blocks_per_request, (i + 1) * blocks_per_request)) for i in range(len(prompts))]
    while any(len(o) < num_steps for o in outputs):
        reqs = []
        for i, prompt in enumerate(prompts):
            if len(outputs[i]) >= num_steps:
                continue
            known = prompt + outputs[i]
            end = len(known) if chunk is None else min(len(known), computed[i] + chunk)
            reqs.append(ScheduledRequest(
                req_id=str(i), token_ids=known[computed[i]:end], start_pos=computed[i], block_ids=blocks[i],
                sample=end == len(known), sampling_params=greedy, num_output_tokens=len(outputs[i]),
                num_prompt_tokens=len(prompt),
            ))
            computed[i] = end
        out = executor.execute(SchedulerOutput(reqs, sum(len(r.token_ids) for r in reqs)))
        for req_id, token in zip(out.req_ids, out.sampled_token_ids):
            outputs[int(req_id)].append(token)
    return outputs


def hf_greedy(path: Path, prompts: list[list[int]], num_steps: int) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    results = []
    with torch.no_grad():
        for prompt in prompts:
            out = model.generate(
                torch.tensor([prompt]), max_new_tokens=num_steps, min_new_tokens=num_steps, do_sample=False,
                pad_token_id=0, eos_token_id=None,
            )
            results.append(out[0, len(prompt):].tolist())
    return results


def model_config(path: Path) -> ModelConfig:
    return ModelConfig.from_path(path)
