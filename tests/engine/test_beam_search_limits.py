"""LLM.beam_search keeps generate()'s limits: beams end where generate() ends a request at max_model_len (it used to
score sequences of max_model_len tokens and then fail with a misleading error about the prompt), a prompt that cannot
run is refused before anything is queued with generate()'s error, and a failure in the middle of a search aborts
every beam request it queued."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.beam_search import BeamSearchParams
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

MAX_MODEL_LEN = 32
SHORT = [5, 6, 7, 8]
LONG = [5 + i % 200 for i in range(MAX_MODEL_LEN - 2)]  # room for two generated tokens


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("beam_limits"), "llama", dtype="float32", num_shards=1)
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64,
             max_model_len=MAX_MODEL_LEN, max_num_batched_tokens=16) as engine:
        yield engine


def idle(llm) -> bool:
    stats = llm.core.stats()
    return stats.num_running == 0 and stats.num_waiting == 0


def test_beams_end_at_max_model_len_as_generate_does(llm):
    short, long_ = llm.beam_search([SHORT, LONG], BeamSearchParams(beam_width=2, max_tokens=5, ignore_eos=True))
    assert [len(s.token_ids) for s in short] == [5, 5]
    assert [len(s.token_ids) for s in long_] == [2, 2]  # prompt + output = max_model_len, as generate() stops
    (greedy,) = llm.generate([LONG], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
    assert greedy.outputs[0].finish_reason == "length"
    (best,) = llm.beam_search([LONG], BeamSearchParams(beam_width=1, max_tokens=5, ignore_eos=True))[0]
    assert best.token_ids == greedy.outputs[0].token_ids  # one beam is greedy decoding, cut at the same length
    # a prompt of exactly max_model_len tokens gets the one token generate() gives it
    (at_limit,) = llm.generate([LONG + [3, 4]], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
    beams = llm.beam_search([LONG + [3, 4]], BeamSearchParams(beam_width=2, max_tokens=5, ignore_eos=True))[0]
    assert len(at_limit.outputs[0].token_ids) == 1 and [len(s.token_ids) for s in beams] == [1, 1]
    assert idle(llm)


def test_a_prompt_that_cannot_run_is_refused_before_anything_is_queued(llm, monkeypatch):
    too_long = LONG + [3, 4, 5]
    with pytest.raises(ConfigError) as from_generate:
        llm.generate([SHORT, too_long], SamplingParams(temperature=0, max_tokens=5))
    steps, real_step = [], llm.core.step
    monkeypatch.setattr(llm.core, "step", lambda: steps.append(1) or real_step())  # counts the search's steps
    with pytest.raises(ConfigError) as from_beam_search:
        llm.beam_search([SHORT, too_long], BeamSearchParams(beam_width=2, max_tokens=5))
    assert from_beam_search.value.message == from_generate.value.message  # "the prompt has 33 tokens, more than ..."
    assert steps == [] and idle(llm)


def test_a_failure_mid_search_aborts_every_beam_request(llm, monkeypatch):
    real_step, calls = llm.core.step, []

    def interrupted_on_the_fourth_step():
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(llm.core, "step", interrupted_on_the_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        llm.beam_search([SHORT, LONG[:20]], BeamSearchParams(beam_width=3, max_tokens=8, ignore_eos=True))
    monkeypatch.undo()
    assert idle(llm)  # nothing of the search left queued or running
    (out,) = llm.generate([SHORT], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    assert len(out.outputs[0].token_ids) == 3
    assert not llm.core.has_unfinished_requests()
