"""n-gram speculative decoding: greedy output token-identical to plain decoding on the real model runner (one rank
and three tensor ranks on gloo, chunked prefill, preemption), drafts really accepted, and the sampling rule keeps
the target distribution (chi-square; plain acceptance of drafts fails the same test)."""

import pytest
import torch

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.ngram_proposer import propose_ngram
from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.sampler import Sampler
from vdeploy.worker.spec_verify import accepted_tokens, verify_drafts

# prompts that repeat themselves, so prompt lookup finds drafts
BASE = [(17 * j) % 240 + 5 for j in range(12)]
PROMPTS = [BASE * 3, BASE[:7] * 4 + [9, 9], [3, 4, 5, 6] * 6, list(range(10, 40)), BASE[::-1] * 2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    overrides = {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 192}
    return write_tiny_checkpoint(tmp_path_factory.mktemp("spec"), "llama", dtype="float32", num_shards=1,
                                 config_overrides=overrides)


def greedy(checkpoint, **kw):
    params = [SamplingParams(temperature=0, max_tokens=40, ignore_eos=True),
              SamplingParams(temperature=0, max_tokens=7),
              SamplingParams(n=2, temperature=0, max_tokens=33, ignore_eos=True),
              SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop_token_ids=[5, 22]),
              SamplingParams(temperature=0, max_tokens=25, ignore_eos=True)]
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, max_num_batched_tokens=24,
             num_gpu_blocks_override=48, **kw) as llm:
        outs = llm.generate(PROMPTS, params)
        stats = llm.core.stats()
    assert stats.num_free_blocks == stats.num_total_blocks
    return [[(c.index, c.token_ids, c.finish_reason) for c in o.outputs] for o in outs], stats


def test_propose_ngram_finds_the_latest_continuation():
    assert propose_ngram([1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3], 2) == [7, 1]
    assert propose_ngram([1, 2, 3, 4], 3) == []
    assert propose_ngram([5, 6, 5], 4, max_n=1) == [6, 5]


def test_greedy_identical_with_ngram_drafts_and_drafts_accepted(checkpoint):
    plain, _ = greedy(checkpoint)
    spec, stats = greedy(checkpoint, speculative_config={"method": "ngram", "num_speculative_tokens": 3})
    assert spec == plain
    assert stats.spec_draft_tokens_total > 0 and stats.spec_accepted_tokens_total > 0
    assert stats.generation_tokens_total == sum(len(c[1]) for o in plain for c in o)


@pytest.mark.timeout(180)
def test_three_tensor_ranks_speculate_identically(checkpoint):
    plain, _ = greedy(checkpoint)
    spec, stats = greedy(checkpoint, tensor_parallel_size=3,
                         speculative_config={"method": "ngram", "num_speculative_tokens": 2})
    assert spec == plain and stats.spec_accepted_tokens_total > 0


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    keep = expected > 0
    return float((((counts - expected) ** 2)[keep] / expected[keep]).sum())


def test_rejection_rule_keeps_the_target_distribution():
    vocab, n, draft = 8, 40_000, 2
    torch.manual_seed(0)
    logits = torch.tensor([1.0, 0.2, 2.0, -1.0, 0.5, 0.0, 1.5, -0.5])
    probs = torch.softmax(logits / 0.8, dim=-1)
    sampler = Sampler(vocab, (), torch.device("cpu"), seed=3)
    req = ScheduledRequest("r", [0, draft], 0, [0], True, SamplingParams(temperature=0.8), num_draft_tokens=1)
    accepted, replacement = verify_drafts(sampler, logits.repeat(n, 1), [req] * n, [[draft]] * n)
    first = torch.tensor([accepted_tokens([draft], [a], [r], bonus=-1)[0]
                          for a, r in zip(accepted.tolist(), replacement.tolist())])
    counts = torch.bincount(first, minlength=vocab).float()
    # 7 degrees of freedom: the 0.999 quantile is 24.3
    assert chi_square(counts, probs) < 24.3
    naive = torch.bincount(torch.full((n,), draft), minlength=vocab).float()  # "accept every draft"
    assert chi_square(naive, probs) > 1000
    accept_rate = accepted.float().mean().item()
    assert abs(accept_rate - probs[draft].item()) < 0.01


def test_seeded_rows_keep_the_target_distribution_and_repeat():
    vocab, n, draft = 8, 20_000, 2
    logits = torch.tensor([1.0, 0.2, 2.0, -1.0, 0.5, 0.0, 1.5, -0.5])
    probs = torch.softmax(logits / 0.8, dim=-1)
    sampler = Sampler(vocab, (), torch.device("cpu"), seed=3)
    # every row its own seed: the draws come from the rows' seeded streams, not the engine's generator
    reqs = [ScheduledRequest(f"r{i}", [0, draft], 0, [0], True, SamplingParams(temperature=0.8, seed=i),
                             num_draft_tokens=1) for i in range(n)]
    accepted, replacement = verify_drafts(sampler, logits.repeat(n, 1), reqs, [[draft]] * n)
    first = torch.where(accepted, draft, replacement)
    assert chi_square(torch.bincount(first, minlength=vocab).float(), probs) < 24.3
    again = verify_drafts(sampler, logits.repeat(n, 1), reqs, [[draft]] * n)
    assert torch.equal(again[0], accepted) and torch.equal(again[1], replacement)


def test_seeded_sampling_repeats_with_drafts(checkpoint):
    seeded = SamplingParams(temperature=0.7, seed=1234, max_tokens=40, ignore_eos=True)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64,
             speculative_config={"method": "ngram", "num_speculative_tokens": 3}) as llm:
        alone = llm.generate([PROMPTS[0]], seeded)[0].outputs[0].token_ids
        # the same request again, now beside others in the batch
        beside = llm.generate([PROMPTS[0], PROMPTS[2]], [seeded, SamplingParams(temperature=1.0, max_tokens=30)])
        assert llm.core.stats().spec_steps_total > 0  # drafts were judged (random weights: most are rejected)
    assert beside[0].outputs[0].token_ids == alone


def test_tokens_past_a_stop_string_are_dropped(checkpoint, tmp_path):
    from engine_test_tokenizer import write_tokenizer_dir

    tokenizer = write_tokenizer_dir(tmp_path / "tok")
    spec = {"method": "ngram", "num_speculative_tokens": 4}

    def run(stop: list[str], **kw):
        params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop=stop)
        with LLM(str(checkpoint), tokenizer=str(tokenizer), dtype="float32", device="cpu", block_size=4,
                 num_gpu_blocks_override=64, **kw) as llm:
            outs = llm.generate(PROMPTS, params)
            return [(c.token_ids, c.text, c.finish_reason) for o in outs for c in o.outputs], llm.core.stats()

    free, _ = run([])
    # stop strings that end inside each answer: the step that completes one may have accepted drafts past it
    stops = sorted({text[len(text) // 2: len(text) // 2 + 2] for _, text, _ in free if len(text) > 8} - {""})
    plain, plain_stats = run(stops)
    drafted, spec_stats = run(stops, speculative_config=spec)
    assert any(reason == "stop" for _, _, reason in plain)
    assert drafted == plain
    assert spec_stats.generation_tokens_total == plain_stats.generation_tokens_total
    assert spec_stats.spec_accepted_tokens_total > 0
