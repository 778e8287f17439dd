"""Asynchronous scheduling (step N+1 scheduled while N is in flight) against the synchronous loop, over the paged
fake executor: identical tokens, texts and finish reasons in every scenario, placeholders really used, and a
request that finishes or is aborted while a step is in flight frees all of its blocks."""

import pytest
from engine_fake_executor import TINY_LLAMA as MODEL
from engine_fake_executor import PagedTokenExecutor
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.outputs import PLACEHOLDER_TOKEN_ID, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer

PROMPTS = [[(11 * i + 3 * j) % 997 for j in range(n)] for i, n in enumerate([5, 23, 40, 9, 17, 31, 2])]
PROMPTS.append(PROMPTS[2][:36] + [1, 2, 3])  # shares 9 blocks with prompt 2


def make_engine(tmp_path, async_scheduling, *, num_blocks=64, budget=4096, max_model_len=None, tokenizer=None):
    cfg = EngineConfig(
        model=str(tmp_path),
        cache=CacheConfig(block_size=4),
        scheduler=SchedulerConfig(max_num_batched_tokens=budget, max_model_len=max_model_len,
                                  async_scheduling=async_scheduling),
    )
    ex = PagedTokenExecutor(4, num_blocks, vocab=tokenizer.vocab_size if tokenizer else 1000)
    return EngineCore(cfg, model_config=MODEL, executor=ex, tokenizer=tokenizer), ex


def run(engine, params_list):
    for i, (prompt, params) in enumerate(zip(PROMPTS, params_list)):
        engine.add_request(f"r{i}", prompt, params)
    final = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return {rid: [(c.index, c.token_ids, c.text, c.finish_reason, c.stop_reason) for c in out.outputs]
            for rid, out in final.items()}


def both(tmp_path, params_list, **kw):
    results, executors = [], []
    for mode in (False, True):
        engine, ex = make_engine(tmp_path, mode, **kw)
        results.append(run(engine, params_list))
        stats = engine.stats()
        assert stats.num_free_blocks == stats.num_total_blocks and stats.num_running == stats.num_waiting == 0
        executors.append(ex)
    assert results[0] == results[1]
    return results[1], executors


def placeholders_used(ex) -> int:
    return sum(r.token_ids.count(PLACEHOLDER_TOKEN_ID) for s in ex.steps for r in s.requests)


@pytest.mark.parametrize("num_blocks, budget", [(64, 4096), (64, 16), (14, 16), (14, 4096)])
def test_greedy_identical_with_chunking_and_preemption(tmp_path, num_blocks, budget):
    params = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)] * len(PROMPTS)
    _, (sync_ex, async_ex) = both(tmp_path, params, num_blocks=num_blocks, budget=budget)
    assert placeholders_used(sync_ex) == 0 and placeholders_used(async_ex) > 0


def test_mixed_limits_seeds_n_and_eos(tmp_path):
    params = [
        SamplingParams(temperature=0, max_tokens=1),
        SamplingParams(n=3, temperature=1.0, seed=5, max_tokens=9, ignore_eos=True),
        SamplingParams(temperature=0.8, top_k=50, seed=2, max_tokens=7, min_tokens=3),
        SamplingParams(temperature=0, max_tokens=20, stop_token_ids=[17, 401, 999]),
        SamplingParams(temperature=0, max_tokens=2, ignore_eos=True),
        SamplingParams(temperature=0, max_tokens=None),  # up to max_model_len
        SamplingParams(temperature=0, max_tokens=15, ignore_eos=True),
        SamplingParams(n=2, temperature=0, max_tokens=6, ignore_eos=True),
    ]
    results, _ = both(tmp_path, params, max_model_len=48)
    assert [c[3] for c in results["r5"]] == ["length"] and len(results["r5"][0][1]) == 48 - len(PROMPTS[5])
    assert len(results["r0"][0][1]) == 1


def test_penalties_wait_for_the_tokens_they_depend_on(tmp_path):
    params = [SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, repetition_penalty=1.3)] + [
        SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)] * (len(PROMPTS) - 1)
    _, (_, async_ex) = both(tmp_path, params)
    assert placeholders_used(async_ex) == 0  # a live penalty request makes every step wait for its tokens


def test_stop_strings_identical(tmp_path):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    texts = []
    for mode in (False, True):
        engine, _ = make_engine(tmp_path, mode, tokenizer=tok)
        prompt = tok.encode("Hello")
        engine.add_request("probe", prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))
        full = ""
        while engine.has_unfinished_requests():
            for out in engine.step():
                full = out.outputs[0].text
        stop = full[8:11]
        engine.add_request("s", prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop]))
        deltas, final = [], None
        while engine.has_unfinished_requests():
            for out in engine.step():
                deltas.append(out.outputs[0].delta_text)
                final = out.outputs[0]
        assert final.finish_reason == "stop" and "".join(deltas) == final.text == full[: full.index(stop)]
        assert engine.stats().num_free_blocks == 64
        texts.append((final.text, final.token_ids))
    assert texts[0] == texts[1]


def test_abort_while_a_step_is_in_flight_frees_every_block(tmp_path):
    engine, ex = make_engine(tmp_path, True)
    engine.add_request("a", PROMPTS[1], SamplingParams(temperature=0, max_tokens=50, ignore_eos=True))
    engine.add_request("b", PROMPTS[2], SamplingParams(temperature=0, max_tokens=50, ignore_eos=True))
    engine.step()
    engine.step()
    assert engine._inflight is not None  # a step that samples for "a" is on the device
    engine.abort_request(["a"])
    outs = {o.request_id: o for o in engine.step()}
    assert outs["a"].finished and outs["a"].outputs[0].finish_reason == "abort"
    engine.abort_request(["b"])
    while engine.has_unfinished_requests():
        engine.step()
    assert engine.stats().num_free_blocks == 64 and engine.stats().num_running == 0


def test_ranks_get_whole_tables_once_then_only_new_blocks_and_drop_finished_ones(tmp_path):
    params = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)] * len(PROMPTS)
    engine, ex = make_engine(tmp_path, True, num_blocks=14, budget=16)  # a tiny pool: preemptions
    run(engine, params)
    assert engine.stats().num_preemptions > 0
    seen: set[str] = set()
    for step in ex.steps:
        for r in step.requests:
            if r.req_id not in seen:
                assert r.new_table and r.block_ids  # first time on the ranks: the whole table
                seen.add(r.req_id)
            elif not r.new_table:
                assert len(r.block_ids) <= 4  # a chunk of 16 tokens needs at most 4 new blocks of 4
        for rid in step.finished_req_ids:
            seen.discard(rid)
    resent = [r for s in ex.steps for r in s.requests if r.new_table and r.start_pos == 0]
    assert len(resent) > len(PROMPTS)  # preempted requests came back with their (new) whole table
    engine.add_request("z", [5, 6, 7], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    engine.step()  # the next real step delivers the last finished ids
    assert set(ex.tables.apply(SchedulerOutput([], 0))) == {"z"}  # no rank keeps a finished request's table


def _finish(engine, rid):
    while True:
        for out in engine.step():
            if out.request_id == rid and out.finished and out.outputs[0].finish_reason != "abort":
                return out.outputs[0].token_ids


@pytest.mark.parametrize("ended_by", ["abort", "stop_token"])
def test_an_id_reused_while_its_last_step_is_in_flight_gets_only_its_own_tokens(tmp_path, ended_by):
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    reference, _ = make_engine(tmp_path, False)
    reference.add_request("x", PROMPTS[3], params)
    alone = _finish(reference, "x")
    engine, _ = make_engine(tmp_path, True)
    if ended_by == "abort":
        engine.add_request("x", PROMPTS[1], params)
        engine.step()
        engine.step()
        assert engine._inflight is not None  # a step that samples for the first "x" is on the device
        engine.abort_request(["x"])
    else:  # it stops on its third token, known only after the step after it was launched
        reference.add_request("first", PROMPTS[1], params)
        third = _finish(reference, "first")[2]
        engine.add_request("x", PROMPTS[1], SamplingParams(temperature=0, max_tokens=10, stop_token_ids=[third]))
        _finish(engine, "x")
        assert engine._inflight is not None
    engine.add_request("x", PROMPTS[3], params)
    assert _finish(engine, "x") == alone
    while engine.has_unfinished_requests():
        engine.step()
    assert engine.stats().num_free_blocks == 64
