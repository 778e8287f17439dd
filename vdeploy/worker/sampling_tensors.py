"""Per-row sampling parameters of one step, gathered into device tensors in one host-to-device transfer.

Built from the `ScheduledRequest`s that sample this step (in SchedulerOutput order): each row of the logits
matrix belongs to one of them. Everything the sampler needs is a tensor here, so sampling has no per-request
host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.device import to_device

_DEFAULT_PARAMS = SamplingParams(temperature=0.0, max_tokens=None)

# Mixing constants of a 64-bit hash (splitmix64), so that (seed, step) pairs map to well-spread generator seeds.
_MIX_A = 0x9E3779B97F4A7C15
_MIX_B = 0xBF58476D1CE4E5B9
_MIX_C = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def step_seed(seed: int, num_output_tokens: int) -> int:
    """A generator seed for one sampling step of a seeded request.

    Derived from (request seed, tokens generated so far) only, so that workers stay stateless and a request that is
    preempted and recomputed draws the same numbers again."""
    z = (seed * _MIX_A + num_output_tokens + 1) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX_B) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX_C) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


@dataclass
class SamplingTensors:
    temperature: torch.Tensor  # [N] float32, 1.0 on greedy rows (never divided by zero)
    greedy: torch.Tensor  # [N] bool
    top_k: torch.Tensor  # [N] int64, vocab size when off
    top_p: torch.Tensor  # [N] float32
    min_p: torch.Tensor  # [N] float32
    repetition_penalty: torch.Tensor  # [N] float32
    presence_penalty: torch.Tensor  # [N] float32
    frequency_penalty: torch.Tensor  # [N] float32
    # host-side facts that decide which (batched) stages run at all
    all_greedy: bool
    any_top_k: bool
    any_top_p: bool
    any_min_p: bool
    any_penalties: bool
    max_num_logprobs: int  # -1 when no row asks for logprobs
    num_logprobs: list[int]  # per row, -1 = not requested
    # per row: generator seed (seeded requests) or None (drawn from the sampler's own generator)
    row_seeds: list[int | None]
    # min_tokens: rows that must not stop yet, and the token ids that would stop them
    banned_token_ids: list[list[int]]

    @classmethod
    def from_requests(
        cls,
        requests: list[ScheduledRequest],
        vocab_size: int,
        eos_token_ids: tuple[int, ...],
        device: torch.device,
    ) -> SamplingTensors:
        params = [r.sampling_params or _DEFAULT_PARAMS for r in requests]
        greedy = [p.greedy for p in params]
        temperature = [1.0 if g else p.temperature for p, g in zip(params, greedy)]
        top_k = [p.top_k if 0 < p.top_k < vocab_size else vocab_size for p in params]
        # float32 rows: [temperature, top_p, min_p, repetition, presence, frequency]
        floats = torch.tensor(
            [
                [t, p.top_p, p.min_p, p.repetition_penalty, p.presence_penalty, p.frequency_penalty]
                for t, p in zip(temperature, params)
            ],
            dtype=torch.float32,
        )
        ints = torch.tensor([[k, int(g)] for k, g in zip(top_k, greedy)], dtype=torch.int64)
        floats, ints = to_device(floats, device), to_device(ints, device)
        sampled_rows = [not g for g in greedy]
        num_logprobs = [-1 if p.logprobs is None else p.logprobs for p in params]
        banned = []
        for r, p in zip(requests, params):
            if r.num_output_tokens < p.min_tokens:
                stop_ids = list(p.stop_token_ids) + ([] if p.ignore_eos else list(eos_token_ids))
                banned.append([t for t in stop_ids if 0 <= t < vocab_size])
            else:
                banned.append([])
        return cls(
            temperature=floats[:, 0],
            greedy=ints[:, 1].bool(),
            top_k=ints[:, 0],
            top_p=floats[:, 1],
            min_p=floats[:, 2],
            repetition_penalty=floats[:, 3],
            presence_penalty=floats[:, 4],
            frequency_penalty=floats[:, 5],
            all_greedy=all(greedy),
            any_top_k=any(k < vocab_size and s for k, s in zip(top_k, sampled_rows)),
            any_top_p=any(p.top_p < 1.0 and s for p, s in zip(params, sampled_rows)),
            any_min_p=any(p.min_p > 0.0 and s for p, s in zip(params, sampled_rows)),
            any_penalties=any(p.uses_penalties for p in params),
            max_num_logprobs=max(num_logprobs, default=-1),
            num_logprobs=num_logprobs,
            row_seeds=[
                None if p.seed is None or g else step_seed(p.seed, r.num_output_tokens)
                for r, p, g in zip(requests, params, greedy)
            ],
            banned_token_ids=banned,
        )


def penalty_token_counts(
    requests: list[ScheduledRequest], vocab_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output token counts [N, V] float32, seen-anywhere mask [N, V] bool) from each request's penalty_token_ids.

    Presence and frequency penalties count generated tokens only; the repetition penalty covers prompt and output
    (OpenAI / vLLM semantics)."""
    n = len(requests)
    lengths = [len(r.penalty_token_ids or ()) for r in requests]
    width = max(max(lengths, default=0), 1)
    # token ids padded with vocab_size, a spare column that is dropped after the scatter
    ids = torch.full((n, width), vocab_size, dtype=torch.int64)
    is_output = torch.zeros((n, width), dtype=torch.float32)
    for i, r in enumerate(requests):
        if lengths[i]:
            ids[i, : lengths[i]] = torch.tensor(r.penalty_token_ids, dtype=torch.int64).clamp_(0, vocab_size)
            is_output[i, min(r.num_prompt_tokens, lengths[i]) : lengths[i]] = 1.0
    ids, is_output = to_device(ids, device), to_device(is_output, device)
    output_counts = torch.zeros((n, vocab_size + 1), dtype=torch.float32, device=device)
    output_counts.scatter_add_(1, ids, is_output)
    seen = torch.zeros((n, vocab_size + 1), dtype=torch.bool, device=device)
    seen.scatter_(1, ids, True)
    return output_counts[:, :vocab_size], seen[:, :vocab_size]
