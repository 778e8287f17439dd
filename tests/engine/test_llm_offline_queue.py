"""Offline generation is not bounded by the server's waiting queue: LLM.generate and LLM.beam_search feed prompts
(x n, x beam width) to the engine as its queue drains, instead of failing with QueueFull ("retry shortly") beyond
max_waiting; outputs come back complete and in input order, and a request's n samples are queued together."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.beam_search import BeamSearchParams
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

MAX_WAITING = 4
PROMPTS = [[(17 * i + 5 * j) % 250 + 3 for j in range(3 + i % 5)] for i in range(11)]
GREEDY = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("queue"), "llama", dtype="float32", num_shards=1)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64,
             max_waiting=MAX_WAITING) as engine:
        yield engine


def tokens(outputs):
    return [[c.token_ids for c in out.outputs] for out in outputs]


def test_more_prompts_than_the_waiting_queue_holds_all_run_in_order(llm):
    outs = llm.generate(PROMPTS, GREEDY)
    assert [o.prompt_token_ids for o in outs] == PROMPTS and all(o.finished for o in outs)
    alone = [llm.generate([p], GREEDY)[0] for p in PROMPTS]
    assert tokens(outs) == tokens(alone)
    assert not llm.core.has_unfinished_requests()


def test_n_samples_are_queued_together(llm):
    seeded = [SamplingParams(n=3, temperature=1.0, seed=i, max_tokens=4, ignore_eos=True) for i in range(5)]
    # 5 prompts x 3 samples through a queue of 4: a group waits until the queue has room for all of its samples
    outs = llm.generate(PROMPTS[:5], seeded)
    assert [[c.index for c in o.outputs] for o in outs] == [[0, 1, 2]] * 5
    alone = [llm.generate([p], params)[0] for p, params in zip(PROMPTS[:5], seeded)]
    assert tokens(outs) == tokens(alone)


def test_more_samples_of_one_prompt_than_the_queue_holds_are_refused_up_front(llm):
    with pytest.raises(ConfigError, match=r"n=5 .*\(max_waiting=4\)"):
        llm.generate(PROMPTS[:2], SamplingParams(n=5, max_tokens=2))
    assert not llm.core.has_unfinished_requests()


def test_beam_search_wider_than_the_queue(llm):
    params = BeamSearchParams(beam_width=3, max_tokens=4, ignore_eos=True)
    together = llm.beam_search(PROMPTS[:3], params)  # 9 beams a step through a queue of 4
    alone = [llm.beam_search([p], params)[0] for p in PROMPTS[:3]]
    assert [[s.token_ids for s in r] for r in together] == [[s.token_ids for s in r] for r in alone]
    assert all(len(r) == 3 for r in together)
    assert not llm.core.has_unfinished_requests()
