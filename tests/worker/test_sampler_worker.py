"""Sampler behaviour on hand-made logits (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.sampler import Sampler, apply_top_k_top_p
from vdeploy.worker.sampling_tensors import step_seed

V = 32
DEVICE = torch.device("cpu")


def req(params: SamplingParams | None, *, num_output_tokens: int = 0, penalty_ids=None, num_prompt=0, rid="r"):
    return ScheduledRequest(
        req_id=rid,
        token_ids=[1],
        start_pos=0,
        block_ids=[0],
        sample=True,
        sampling_params=params,
        num_output_tokens=num_output_tokens,
        penalty_token_ids=penalty_ids,
        num_prompt_tokens=num_prompt,
    )


def sampler(eos=(0,), seed=0) -> Sampler:
    return Sampler(V, eos, DEVICE, seed=seed)


def random_logits(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, V, generator=g) * 3


def test_greedy_is_argmax_and_ignores_padded_vocab_columns():
    logits = random_logits(4)
    padded = torch.cat([logits, torch.full((4, 8), 100.0)], dim=1)  # vocab-parallel padding columns
    out = sampler()(padded, [req(SamplingParams(temperature=0.0))] * 4)
    assert out.sampled_token_ids == logits.argmax(-1).tolist()
    assert out.logprobs is None


def test_top_k_1_and_tiny_top_p_equal_greedy():
    logits = random_logits(8, seed=1)
    expect = logits.argmax(-1).tolist()
    s = sampler()
    assert s(logits, [req(SamplingParams(temperature=1.5, top_k=1))] * 8).sampled_token_ids == expect
    assert s(logits, [req(SamplingParams(temperature=1.5, top_p=1e-6))] * 8).sampled_token_ids == expect


def test_min_p_keeps_only_tokens_near_the_best():
    logits = torch.full((1, V), -10.0)
    logits[0, 3], logits[0, 5], logits[0, 7] = 5.0, 4.9, 0.0  # 7 is ~150x less likely than 3
    params = SamplingParams(temperature=1.0, min_p=0.1)
    s = sampler()
    drawn = {s(logits, [req(params)]).sampled_token_ids[0] for _ in range(200)}
    assert drawn == {3, 5}


def test_top_k_top_p_mask_matches_definition():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    masked = apply_top_k_top_p(logits, torch.tensor([3]), torch.tensor([1.0]), use_top_p=False)
    assert torch.isinf(masked[0, 3:]).all() and torch.isfinite(masked[0, :3]).all()
    probs = logits.softmax(-1)[0]  # 0.636, 0.234, 0.086, ...
    masked = apply_top_k_top_p(logits, torch.tensor([5]), torch.tensor([float(probs[0] + 0.01)]), use_top_p=True)
    assert torch.isfinite(masked[0, :2]).all() and torch.isinf(masked[0, 2:]).all()


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1] + [1e-9] * (V - 3)]))
    s = sampler(seed=123)
    counts = torch.zeros(V)
    reqs = [req(SamplingParams(temperature=1.0))] * 500
    for token in s(logits.expand(500, V).contiguous(), reqs).sampled_token_ids:
        counts[token] += 1
    freq = counts[:3] / 500
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.07)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.zeros(1, V)
    logits[0, 2], logits[0, 4], logits[0, 6] = 2.0, -2.0, 1.9
    params = SamplingParams(temperature=0.0, repetition_penalty=2.0, logprobs=0)
    out = sampler()(logits, [req(params, penalty_ids=[2, 4], num_prompt=2)])
    assert out.sampled_token_ids == [6]  # token 2 dropped from 2.0 to 1.0
    penalised = logits.clone()
    penalised[0, 2], penalised[0, 4] = 1.0, -4.0
    assert out.logprobs[0].logprob == pytest.approx(float(penalised.log_softmax(-1)[0, 6]), abs=1e-5)


def test_presence_and_frequency_penalties_count_output_tokens_only():
    logits = torch.zeros(1, V)
    logits[0, 1], logits[0, 2] = 1.0, 0.8
    # token 1 appears 3 times in the output, token 2 only in the prompt
    params = SamplingParams(temperature=0.0, frequency_penalty=0.1, logprobs=0)
    s = sampler()
    out = s(logits, [req(params, penalty_ids=[2, 1, 1, 1], num_prompt=1)])
    assert out.sampled_token_ids == [2]  # 1.0 - 0.3 = 0.7 < 0.8
    expected = logits.clone()
    expected[0, 1] -= 0.3
    assert out.logprobs[0].logprob == pytest.approx(float(expected.log_softmax(-1)[0, 2]), abs=1e-5)
    params = SamplingParams(temperature=0.0, presence_penalty=0.25)  # once, however often: 1.0 - 0.25 < 0.8
    assert s(logits, [req(params, penalty_ids=[2, 1, 1, 1], num_prompt=1)]).sampled_token_ids == [2]
    assert s(logits, [req(params, penalty_ids=[1, 2], num_prompt=2)]).sampled_token_ids == [1]  # prompt only


def test_seeded_rows_reproducible_across_calls_and_batch_positions():
    logits = random_logits(1, seed=5)
    params = SamplingParams(temperature=1.0, seed=42)
    first = [sampler(seed=1)(logits, [req(params, num_output_tokens=k)]).sampled_token_ids[0] for k in range(20)]
    # same request, other sampler instance (another worker), placed among unseeded rows
    other = sampler(seed=99)
    batch_logits = torch.cat([random_logits(2, seed=9), logits, random_logits(1, seed=8)])
    again = []
    for k in range(20):
        reqs = [req(SamplingParams(temperature=1.0)), req(SamplingParams(temperature=1.0)),
                req(params, num_output_tokens=k), req(SamplingParams(temperature=1.0))]
        again.append(other(batch_logits, reqs).sampled_token_ids[2])
    assert first == again
    assert len(set(first)) > 1  # the step index changes the draw
    assert step_seed(42, 0) != step_seed(43, 0) and step_seed(42, 0) != step_seed(42, 1)


def test_logprobs_are_normalised_and_ranked():
    logits = random_logits(3, seed=11)
    reqs = [req(SamplingParams(temperature=0.8, logprobs=5)), req(SamplingParams(temperature=0.0)),
            req(SamplingParams(temperature=0.0, logprobs=0))]
    out = sampler()(logits, reqs)
    lp = logits.log_softmax(-1)
    assert math.isclose(sum(math.exp(v) for v in lp[0].tolist()), 1.0, rel_tol=1e-5)
    first = out.logprobs[0]
    assert first.logprob == pytest.approx(float(lp[0, first.token_id]), abs=1e-5)
    assert [t for t, _ in first.top] == lp[0].topk(5).indices.tolist()
    values = [v for _, v in first.top]
    assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
    assert out.logprobs[1].top == [] and out.logprobs[2].top == []
    assert out.logprobs[2].token_id == int(logits[2].argmax())


def test_min_tokens_bans_eos_and_stop_ids_until_reached():
    logits = torch.zeros(1, V)
    logits[0, 0], logits[0, 9], logits[0, 4] = 5.0, 4.0, 3.0  # 0 = EOS, 9 = a stop token id
    params = SamplingParams(temperature=0.0, min_tokens=2, stop_token_ids=[9])
    s = sampler(eos=(0,))
    assert s(logits, [req(params, num_output_tokens=1)]).sampled_token_ids == [4]
    assert s(logits, [req(params, num_output_tokens=2)]).sampled_token_ids == [0]
