"""Scheduler side of MTP speculation: the workers' drafts (ModelRunnerOutput.draft_token_ids) become the next
decode's drafts, once, within the request's limits; k - 1 slots are reserved ahead for the recurrent drafts; non-final
prefill chunks carry the prompt token after them (the MTP module's input at their last row)."""

from vdeploy.config import SchedulerConfig
from vdeploy.engine.kv_cache_manager import KVCacheManager
from vdeploy.engine.outputs import ModelRunnerOutput
from vdeploy.engine.request import Request
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import Scheduler
from vdeploy.speculative_config import SpeculativeConfig

BLOCK = 4


def make(k=3, budget=64, method="mtp"):
    kv = KVCacheManager(64, BLOCK, enable_prefix_caching=True)
    spec = SpeculativeConfig(method=method, num_speculative_tokens=k)
    return Scheduler(SchedulerConfig(max_num_batched_tokens=budget), kv, 256, spec), kv


def test_chunks_carry_the_next_prompt_token_only_with_mtp():
    for method, expected in (("mtp", {"r": 104}), ("ngram", {})):
        sched, _ = make(budget=4, method=method)
        sched.add_request(Request("r", list(range(100, 110)), SamplingParams(temperature=0, max_tokens=5)))
        out = sched.schedule()
        assert out.requests[0].token_ids == [100, 101, 102, 103] and out.next_token_ids == expected


def test_worker_drafts_become_the_next_decodes_drafts_once():
    sched, kv = make(k=3)
    r = Request("r", list(range(100, 110)), SamplingParams(temperature=0, max_tokens=6))
    sched.add_request(r)
    out = sched.schedule()  # the whole prompt; it samples
    sched.update_from_output(out, ModelRunnerOutput(["r"], [7], draft_token_ids=[[8, 9, 10]]))
    assert r.draft_token_ids == [8, 9, 10]
    out = sched.schedule()
    assert out.requests[0].token_ids == [7, 8, 9, 10] and out.requests[0].num_draft_tokens == 3
    assert r.draft_token_ids == []  # consumed
    # k - 1 = 2 slots reserved past the step's 4 tokens for the recurrent drafts
    assert len(kv.block_ids_view("r")) * BLOCK >= r.num_computed_tokens + 2
    # one draft accepted: [8, x]; new drafts arrive for the step after
    sched.update_from_output(out, ModelRunnerOutput(["r"], [8], accepted_token_ids=[[8, 11]],
                                                    draft_token_ids=[[12, 13, 14]], draft_seconds=0.01))
    assert r.output_token_ids == [7, 8, 11] and sched.num_spec_steps == 1 and sched.draft_seconds == 0.01
    # max_tokens=6 leaves room for 3 more tokens: at most 2 drafts (the step always emits one more)
    out = sched.schedule()
    assert out.requests[0].token_ids == [11, 12, 13]
