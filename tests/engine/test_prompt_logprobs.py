"""SamplingParams.prompt_logprobs against transformers on the same weights (a tiny fp32 Llama): every prompt token's
logprob, rank and top-N, whether the prompt runs in one step or in chunks, again when its blocks sit in the prefix
cache (a hit must not skip a position), for sample 0 of n > 1, and through tensor parallelism (two CPU ranks)."""

import pytest
import torch

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

PROMPTS = [[(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([37, 5, 1])]
TOP = 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("plp"), "llama", dtype="float32", num_shards=1)


@pytest.fixture(scope="module")
def expected(checkpoint):
    """Per prompt: [None] + (logprob, rank, top ids) of each next prompt token, from transformers' logits."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    out = []
    for prompt in PROMPTS:
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)  # [P, V]
        rows = [None]
        for i, token in enumerate(prompt[1:]):
            lp = logprobs[i]
            rows.append((lp[token].item(), int((lp > lp[token]).sum()) + 1, lp.topk(TOP).indices.tolist()))
        out.append(rows)
    return out


def check(outputs, expected, n=1):
    for out, want in zip(outputs, expected):
        got = out.prompt_logprobs
        assert got is not None and len(got) == len(out.prompt_token_ids) == len(want)
        assert got[0] is None
        for entry, (logprob, rank, top_ids), token in zip(got[1:], want[1:], out.prompt_token_ids[1:]):
            assert entry.token_id == token and entry.rank == rank
            assert entry.logprob == pytest.approx(logprob, abs=1e-4)
            assert [t for t, _ in entry.top] == top_ids
        assert len(out.outputs) == n


@pytest.mark.parametrize("chunk", [None, 8])  # the whole prompt in one step, or chunks of 8 tokens
def test_prompt_logprobs_match_transformers(checkpoint, expected, chunk):
    extra = {"max_num_batched_tokens": chunk, "enable_chunked_prefill": True} if chunk else {}
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128,
             **extra) as llm:
        params = SamplingParams(temperature=0, max_tokens=3, prompt_logprobs=TOP)
        check(llm.generate(PROMPTS, params), expected)
        # the same prompts again: their blocks are cached now, and a hit must not skip a scored position
        check(llm.generate(PROMPTS, params), expected)
        # sample 0 of n computes them once; the output carries them once
        check(llm.generate(PROMPTS[:1], SamplingParams(temperature=0.8, seed=1, n=2, max_tokens=2,
                                                       prompt_logprobs=TOP)), expected[:1], n=2)
        # prompt_logprobs=0: the token's own logprob and rank, no top list
        (zero,) = llm.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0))
        assert all(e.top == [] for e in zero.prompt_logprobs[1:])
        assert [e.logprob for e in zero.prompt_logprobs[1:]] == pytest.approx([w[0] for w in expected[0][1:]],
                                                                               abs=1e-4)
        # not asked: none
        (plain,) = llm.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=1))
        assert plain.prompt_logprobs is None


def test_prompt_logprobs_with_two_tensor_ranks(checkpoint, expected):
    with LLM(str(checkpoint), dtype="float32", device="cpu", tensor_parallel_size=2, block_size=4,
             num_gpu_blocks_override=128, max_num_batched_tokens=16, enable_chunked_prefill=True) as llm:
        check(llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=2, prompt_logprobs=TOP)), expected)


def test_prompt_logprobs_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="prompt_logprobs"):
        SamplingParams(prompt_logprobs=-1)


def test_prompt_logprobs_survive_preemption(checkpoint):
    """A pool too small for three prompts and their answers: requests are preempted mid-way and recompute their
    prompts; each position is reported once, equal to an unhindered run."""
    prompts = [[(31 * i + 7 * j) % 250 + 3 for j in range(30)] for i in range(3)]
    params = SamplingParams(temperature=0, max_tokens=20, prompt_logprobs=2)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=130) as llm:
        want = llm.generate(prompts, params)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=24,
             max_num_batched_tokens=8, enable_chunked_prefill=True) as llm:
        got = llm.generate(prompts, params)
        assert llm.core.stats().num_preemptions > 0
    for g, w in zip(got, want):
        assert len(g.prompt_logprobs) == len(w.prompt_logprobs) == 30
        assert [(e.token_id, e.rank, [t for t, _ in e.top]) for e in g.prompt_logprobs[1:]] == \
            [(e.token_id, e.rank, [t for t, _ in e.top]) for e in w.prompt_logprobs[1:]]
        assert [e.logprob for e in g.prompt_logprobs[1:]] == \
            pytest.approx([e.logprob for e in w.prompt_logprobs[1:]], abs=1e-5)  # chunks sum in another order
