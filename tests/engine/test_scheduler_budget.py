"""Scheduler: token budget, chunk boundaries, sequence slots, preemption and resume, abort, stop rules."""

import pytest
from engine_fake_executor import PagedTokenExecutor, reference_generation

from vdeploy.config import SchedulerConfig
from vdeploy.engine.kv_cache_manager import KVCacheManager
from vdeploy.engine.request import Request, RequestStatus
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.scheduler import QueueFull, Scheduler
from vdeploy.errors import ConfigError


def make(num_blocks=64, block_size=4, budget=4096, max_num_seqs=256, max_model_len=256, caching=True, **kw):
    kv = KVCacheManager(num_blocks, block_size, enable_prefix_caching=caching)
    cfg = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, **kw)
    executor = PagedTokenExecutor(block_size, num_blocks)
    executor.initialize_kv_cache(num_blocks)
    return Scheduler(cfg, kv, max_model_len), executor


def req(rid, n_prompt, max_tokens=4, offset=0, **params):
    return Request(rid, [offset + i for i in range(n_prompt)], SamplingParams(temperature=0, max_tokens=max_tokens, **params))


def step(sched, executor):
    out = sched.schedule()
    return out, sched.update_from_output(out, executor.execute(out))


def run_to_completion(sched, executor, max_steps=1000):
    for _ in range(max_steps):
        if not sched.has_unfinished_requests():
            return
        step(sched, executor)
    raise AssertionError("did not finish")


@pytest.mark.parametrize("budget, chunks", [(16, [16, 16, 8]), (4096, [40])])
def test_long_prompt_is_chunked_by_the_budget(budget, chunks):
    sched, ex = make(budget=budget)
    r = req("a", 40)
    sched.add_request(r)
    seen = []
    while r.num_output_tokens == 0:
        out, _ = step(sched, ex)
        (s,) = out.requests
        assert s.start_pos == sum(seen)
        seen.append(len(s.token_ids))
        assert s.sample == (sum(seen) == 40)
        assert (s.sampling_params is not None) == s.sample
    assert seen == chunks
    out, _ = step(sched, ex)
    assert [len(s.token_ids) for s in out.requests] == [1]  # then one-token decode steps


def test_running_requests_come_first_and_share_the_budget_with_waiting_ones():
    sched, ex = make(budget=10)
    sched.add_request(req("a", 8))
    step(sched, ex)  # a: 8 prompt tokens, samples
    sched.add_request(req("b", 20, offset=100))
    out, _ = step(sched, ex)
    assert [(s.req_id, len(s.token_ids)) for s in out.requests] == [("a", 1), ("b", 9)]
    assert out.num_scheduled_tokens == 10


def test_max_num_seqs_caps_the_running_set():
    sched, ex = make(max_num_seqs=2)
    for i in range(3):
        sched.add_request(req(f"r{i}", 4, offset=10 * i))
    out, _ = step(sched, ex)
    assert [s.req_id for s in out.requests] == ["r0", "r1"]
    assert sched.num_waiting == 1
    run_to_completion(sched, ex)


def test_preemption_frees_the_newest_and_it_resumes_with_identical_tokens():
    # 6 blocks of 4 tokens; each request grows to 8 + 8 = 16 tokens = 4 blocks: both cannot finish together
    sched, ex = make(num_blocks=6, caching=False)
    a, b = req("a", 8, max_tokens=8), req("b", 8, max_tokens=8, offset=50)
    sched.add_request(a)
    sched.add_request(b)
    preempted_seen = False
    while sched.has_unfinished_requests():
        out, _ = step(sched, ex)
        if b.status == RequestStatus.PREEMPTED:
            preempted_seen = True
            assert b.num_computed_tokens == 0 and sched.waiting[0] is b
            assert sched.kv.num_blocks_of("b") == 0
        if preempted_seen and any(s.req_id == "b" and s.start_pos == 0 for s in out.requests):
            resumed = next(s for s in out.requests if s.req_id == "b")
            assert resumed.token_ids == b.all_token_ids[: len(resumed.token_ids)]
    assert preempted_seen and sched.num_preemptions >= 1 and b.num_preemptions >= 1
    assert a.output_token_ids == reference_generation(a.prompt_token_ids, 8)
    assert b.output_token_ids == reference_generation(b.prompt_token_ids, 8)
    assert sched.kv.num_free_blocks == 6


def test_abort_frees_blocks_of_running_and_waiting_requests():
    sched, ex = make(num_blocks=8, max_num_seqs=1)
    a, b = req("a", 10), req("b", 3)
    sched.add_request(a)
    sched.add_request(b)
    step(sched, ex)
    assert sched.kv.num_free_blocks == 5
    aborted = sched.abort_requests(["a", "b", "unknown"])
    assert aborted == [a, b]
    assert a.status == b.status == RequestStatus.FINISHED_ABORTED
    assert sched.kv.num_free_blocks == 8 and not sched.has_unfinished_requests()
    out = sched.schedule()
    assert out.is_empty and out.finished_req_ids == []  # an empty step is never sent to the ranks
    sched.add_request(req("c", 3))
    assert sched.schedule().finished_req_ids == ["a", "b"]  # the next real step tells them to drop the tables


def test_stop_rules_eos_min_tokens_stop_ids_and_lengths():
    sched, ex = make(max_model_len=12)
    target = reference_generation(list(range(4)), 6)
    eos = Request("eos", list(range(4)), SamplingParams(temperature=0, max_tokens=10), eos_token_ids=(target[1],))
    ignore = Request("ign", list(range(4)), SamplingParams(temperature=0, max_tokens=3, ignore_eos=True), eos_token_ids=(target[0],))
    mintok = Request("min", list(range(4)), SamplingParams(temperature=0, max_tokens=5, min_tokens=2), eos_token_ids=(target[0],))
    stop_id = Request("sid", list(range(4)), SamplingParams(temperature=0, max_tokens=10, stop_token_ids=[target[2]]))
    long = Request("len", list(range(4)), SamplingParams(temperature=0, max_tokens=None))
    for r in (eos, ignore, mintok, stop_id, long):
        sched.add_request(r)
    run_to_completion(sched, ex)
    assert (eos.status, eos.output_token_ids) == (RequestStatus.FINISHED_STOPPED, target[:2])
    assert (ignore.status, len(ignore.output_token_ids)) == (RequestStatus.FINISHED_LENGTH, 3)
    assert mintok.num_output_tokens == 5  # eos only counted from the 2nd token; target[0] does not recur
    assert (stop_id.status, stop_id.stop_reason, stop_id.output_token_ids) == (RequestStatus.FINISHED_STOPPED, target[2], target[:3])
    assert (long.status, long.num_tokens) == (RequestStatus.FINISHED_LENGTH, 12)


def test_prompt_longer_than_max_model_len_is_rejected_and_queue_is_bounded():
    sched, _ = make(max_model_len=16, max_waiting=2)
    with pytest.raises(ConfigError, match="max_model_len"):
        sched.add_request(req("big", 17))
    sched.add_request(req("a", 4))
    sched.add_request(req("b", 4))
    with pytest.raises(QueueFull):
        sched.add_request(req("c", 4))
    with pytest.raises(ConfigError, match="duplicate"):
        sched.add_request(req("a", 4))


def test_prefix_sharing_within_one_step_gives_reference_tokens():
    sched, ex = make(num_blocks=32)
    reqs = [req(f"r{i}", 13, max_tokens=6) for i in range(3)]  # identical prompts, admitted in the same step
    for r in reqs:
        sched.add_request(r)
    out, _ = step(sched, ex)
    # r1, r2 share r0's 12 tokens (3 blocks) and compute one token each; one-token requests are listed first
    assert [(s.req_id, len(s.token_ids)) for s in out.requests] == [("r1", 1), ("r2", 1), ("r0", 13)]
    assert reqs[1].num_cached_tokens == 12
    run_to_completion(sched, ex)
    for r in reqs:
        assert r.output_token_ids == reference_generation(r.prompt_token_ids, 6)


def test_without_chunked_prefill_prompts_wait_for_a_whole_budget():
    sched, ex = make(budget=10, enable_chunked_prefill=False)
    with pytest.raises(ConfigError, match="chunked prefill is off"):
        sched.add_request(req("huge", 11))
    sched.add_request(req("a", 6))
    sched.add_request(req("b", 6, offset=40))
    out, _ = step(sched, ex)
    assert [(s.req_id, len(s.token_ids)) for s in out.requests] == [("a", 6)]  # b does not fit whole: not split
    out, _ = step(sched, ex)
    assert [(s.req_id, len(s.token_ids)) for s in out.requests] == [("a", 1), ("b", 6)]


def test_without_chunked_prefill_a_request_preempted_past_the_budget_is_recomputed_in_chunks():
    # 8 blocks of 4: a (9 + 20) and b (12 + 20) cannot both finish, so b is preempted after it has grown past the
    # 16-token budget; whole it could never run again
    sched, ex = make(num_blocks=8, budget=16, max_num_seqs=4, caching=False, enable_chunked_prefill=False)
    a, b = req("a", 9, max_tokens=20), req("b", 12, max_tokens=20, offset=100)
    sched.add_request(a)
    sched.add_request(b)
    run_to_completion(sched, ex, max_steps=300)
    assert b.num_preemptions >= 1
    assert a.output_token_ids == reference_generation(a.prompt_token_ids, 20)
    assert b.output_token_ids == reference_generation(b.prompt_token_ids, 20)
