"""The one-pass Gumbel-max sampler (kernels/sampling.py) under the Triton interpreter, and its torch twin: the argmax
it returns beside the draw, determinism per seed, and a chi-square test that the draws follow softmax(logits / T)
(it fails if the noise is dropped or the temperature ignored)."""

import math

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.sampling import gumbel_sample

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, float("-inf")])  # the last token is banned


def _chi_square(draws: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(draws, minlength=len(probs)).double()
    expected = probs.double() * len(draws)
    live = expected > 0
    assert counts[~live].sum() == 0, "a banned token was drawn"
    return float(((counts[live] - expected[live]) ** 2 / expected[live]).sum())


@pytest.mark.parametrize("impl", [gumbel_sample, reference.gumbel_sample])
@pytest.mark.parametrize("temperature", [0.7, 1.5])
def test_draws_follow_the_tempered_softmax(impl, temperature):
    rows = 800
    logits = LOGITS.repeat(rows, 1)  # [N, V]: one draw per row, each with its own seed
    temp = torch.full((rows,), temperature)
    seeds = torch.arange(rows, dtype=torch.int64) * 7919 + 11
    greedy, sampled = impl(logits, temp, seeds)
    assert torch.equal(greedy, torch.zeros(rows, dtype=torch.int64))
    probs = torch.softmax(LOGITS / temperature, dim=0)
    # 5 degrees of freedom (the banned token excluded): P(chi2 > 20.5) = 0.001
    assert _chi_square(sampled, probs) < 20.5
    # what plain argmax (no noise) or the untempered softmax would have given is far outside that
    assert _chi_square(greedy, probs) > 200
    other = torch.softmax(LOGITS / (1.5 if temperature == 0.7 else 0.7), dim=0)
    assert _chi_square(sampled, other) > 20.5


def test_same_seed_same_draw_and_rows_independent_of_the_batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 300, generator=gen)
    temp = torch.ones(5)
    seeds = torch.tensor([3, 4, 5, 6, 7])
    _, first = gumbel_sample(logits, temp, seeds)
    _, again = gumbel_sample(logits, temp, seeds)
    assert torch.equal(first, again)
    _, alone = gumbel_sample(logits[2:3], temp[2:3], seeds[2:3])  # the row alone, as in another batch
    assert alone.item() == first[2].item()
    draws = {gumbel_sample(logits[:1], temp[:1], torch.tensor([s]))[1].item() for s in range(40)}
    assert len(draws) > 5  # other seeds, other draws (300 near-uniform tokens)


def test_argmax_ties_strides_and_blocks():
    """Ties go to the lowest index (torch.argmax's rule) across lanes and loop steps; a padded-vocab view (row stride
    above V) and a V larger than one block; an all -inf row gives 0."""
    v = 5000  # two loop steps of 4096
    logits = torch.full((4, v + 64), -3.0)[:, :v]  # [4, V] with row stride V + 64
    logits[0, 4500] = 1.0
    logits[0, 4200] = 1.0  # tie: 4200 wins
    logits[1, 7] = 2.0
    logits[1, 4103] = 2.0  # tie across lanes and steps: 7 wins
    logits[2, :] = float("-inf")
    logits[3, v - 1] = 9.0
    greedy, sampled = gumbel_sample(logits, torch.full((4,), 1e-3), torch.arange(4))
    assert greedy.tolist() == [4200, 7, 0, v - 1]
    assert sampled[3].item() == v - 1  # at T = 1e-3 the noise cannot beat a gap of 12 / T
    assert sampled[0].item() in (4200, 4500) and sampled[1].item() in (7, 4103)


def test_bf16_logits_match_float32():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 200, generator=gen).to(torch.bfloat16)
    temp, seeds = torch.full((3,), 0.8), torch.tensor([9, 10, 11])
    assert all(torch.equal(a, b) for a, b in zip(gumbel_sample(logits, temp, seeds),
                                                 gumbel_sample(logits.float(), temp, seeds)))
    assert not math.isnan(float(logits.float().sum()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_at_real_vocabularies():
    """Compiled Triton at Qwen2's padded vocabulary: the argmax equals torch's, the draws follow the softmax (the
    same chi-square as above, the 6 live tokens hidden among -inf columns of a 152,064-wide row)."""
    rows, vocab = 2000, 152064
    logits = torch.full((rows, vocab + 64), float("-inf"), device="cuda")[:, :vocab]
    logits[:, 1000:1006] = LOGITS.cuda()
    greedy, sampled = gumbel_sample(logits, torch.full((rows,), 0.7, device="cuda"),
                                    torch.randint(0, 2**62, (rows,), device="cuda"))
    assert torch.equal(greedy, logits.argmax(dim=-1))
    assert _chi_square(sampled.cpu() - 1000, torch.softmax(LOGITS / 0.7, dim=0)) < 20.5
