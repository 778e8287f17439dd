"""The prefix cache never serves blocks whose step did not run: a request's full blocks become findable when they are
scheduled (so requests of the same step share them), and when that step is interrupted (Ctrl-C inside the device
step of an offline generate) the LLM aborts the call's requests and stays usable. The next call with the same
prompt must compute those blocks again, not attend to KV that was never written."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams

PROMPT = [(31 + 7 * j) % 250 + 3 for j in range(37)]  # 9 full blocks of 4
GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("llama"), "llama", dtype="float32", num_shards=1)


@pytest.fixture(scope="module")
def reference(checkpoint):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, enable_prefix_caching=False,
             num_gpu_blocks_override=64) as llm:
        return llm.generate([PROMPT], GREEDY)[0].outputs[0].token_ids


def _interrupt_step(llm, monkeypatch, at_call: int) -> None:
    """Ctrl-C as the executor receives step number `at_call` (1-based), before the step runs; later steps run."""
    name = "execute_async" if llm.core.async_scheduling else "execute"
    real, calls = getattr(llm.core.executor, name), []

    def interrupted(scheduler_output):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(scheduler_output)

    monkeypatch.setattr(llm.core.executor, name, interrupted)


@pytest.mark.parametrize("async_scheduling", [True, False])
@pytest.mark.parametrize("at_call", [1, 2])  # the prefill itself; a decode while the prefill's step is in flight
def test_blocks_of_an_interrupted_step_are_not_served_from_the_prefix_cache(checkpoint, reference, monkeypatch,
                                                                             async_scheduling, at_call):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64,
             async_scheduling=async_scheduling) as llm:
        _interrupt_step(llm, monkeypatch, at_call)
        with pytest.raises(KeyboardInterrupt):
            llm.generate([PROMPT], GREEDY)
        (out,) = llm.generate([PROMPT], GREEDY)
        assert out.outputs[0].token_ids == reference
        # nothing leaked by the interrupted call
        while llm.core.has_unfinished_requests():
            llm.core.step()
        stats = llm.core.stats()
        assert stats.num_free_blocks == stats.num_total_blocks
        # a third call does reuse what the second one computed
        (again,) = llm.generate([PROMPT], GREEDY)
        assert again.num_cached_tokens == 36 and again.outputs[0].token_ids == reference


def test_two_samples_sharing_an_interrupted_prompt_leave_nothing_stale(checkpoint, reference, monkeypatch):
    """n=2: sample 1 takes the prompt blocks sample 0 registered in the same (interrupted) step."""
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64) as llm:
        _interrupt_step(llm, monkeypatch, 1)
        with pytest.raises(KeyboardInterrupt):
            llm.generate([PROMPT], SamplingParams(n=2, temperature=0, max_tokens=8, ignore_eos=True))
        (out,) = llm.generate([PROMPT], GREEDY)
        assert out.outputs[0].token_ids == reference


def test_an_abort_after_the_prefill_came_back_keeps_its_blocks_findable(checkpoint, reference):
    # a client that disconnects mid-answer: its prompt's blocks were written by a step that came back, so the next
    # request with that prompt (a shared system prompt) still finds them
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64) as llm:
        core = llm.core
        core.add_request("gone", PROMPT, GREEDY)
        while not any(o.outputs[0].token_ids for o in core.step()):  # until its first token came back
            pass
        core.step()
        core.abort_request(["gone"])
        (out,) = llm.generate([PROMPT], GREEDY)
        assert out.num_cached_tokens == 36 and out.outputs[0].token_ids == reference


def test_an_interrupted_step_ends_every_request_it_carried(checkpoint, reference, monkeypatch):
    # a stream left open beside the interrupted call shared its step: it must not go on (or leave blocks in the
    # prefix cache) as if that step's KV had been written
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=64) as llm:
        stream = llm.generate_stream(PROMPT, GREEDY)
        next(stream)  # its prefill came back; its decode steps go on beside the next call
        _interrupt_step(llm, monkeypatch, 1)
        with pytest.raises(KeyboardInterrupt):
            llm.generate([[7, 8, 9, 10, 11]], GREEDY)
        assert not llm.core.scheduler.requests  # both ended
        rest = list(stream)
        assert rest[-1].finished and rest[-1].outputs[0].finish_reason == "abort"
        (out,) = llm.generate([PROMPT], GREEDY)
        assert out.outputs[0].token_ids == reference
        stats = llm.core.stats()
        assert stats.num_free_blocks == stats.num_total_blocks
