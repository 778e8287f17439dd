"""Guided decoding through the engine on the real executor and model runner (a tiny random Llama, CPU): constrained
and free requests in one batch, the same grammar answers across chunked prefill, prefix caching and preemption, the
asynchronous engine pausing its look-ahead while a guided request lives, grammar cache, bad grammars, a grammar
that is complete before min_tokens."""

from __future__ import annotations

import json

import pytest
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import GuidedDecoding, SamplingParams
from vdeploy.errors import ConfigError

SCHEMA = json.dumps({"type": "object", "properties": {
    "ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 999},
    "kind": {"enum": ["a", "b", "c"]}}, "required": ["ok", "n", "kind"], "additionalProperties": False})
PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], [30, 31, 32], [5, 6, 7, 8, 9, 10, 11, 40]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("guided")
    write_tiny_checkpoint(path, "llama", dtype="float32", num_shards=1,
                          config_overrides={"vocab_size": 420, "bos_token_id": None, "eos_token_id": None})
    write_tokenizer_dir(path)
    return path


def _run(model_dir, **kw):
    guided = SamplingParams(temperature=1.0, seed=3, max_tokens=60, guided=GuidedDecoding(json=SCHEMA))
    free = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    with LLM(str(model_dir), dtype="float32", device="cpu", block_size=4, **kw) as llm:
        outs = llm.generate(PROMPTS, [guided, free, guided])
        alone = llm.generate([PROMPTS[1]], [free])
        core = llm.core
        if kw.get("num_gpu_blocks_override", 256) < 20:
            assert core.stats().num_preemptions > 0  # the small pool did preempt: recompute kept each matcher
        assert core._guided.num_live == 0 and core.scheduler.num_guided_requests == 0  # nothing left behind
        assert core._guided.num_compiles == 1 and core._guided.num_cache_hits >= 1  # one schema, compiled once
        return [o.outputs[0] for o in outs], alone[0].outputs[0].token_ids


def test_guided_and_free_rows_in_one_batch_across_scheduling_choices(model_dir):
    base, alone = _run(model_dir, num_gpu_blocks_override=256, max_num_batched_tokens=1024)
    for c in (base[0], base[2]):
        value = json.loads(c.text)
        assert set(value) == {"ok", "n", "kind"} and c.finish_reason == "stop"
    assert base[1].token_ids == alone  # the free row is not touched by its neighbours' masks
    # chunked prefill (8 tokens a step) with prefix caching, then a pool small enough to preempt
    for kw in ({"max_num_batched_tokens": 8, "enable_prefix_caching": True, "num_gpu_blocks_override": 256},
               {"num_gpu_blocks_override": 16, "max_num_batched_tokens": 1024}):
        outs, _ = _run(model_dir, **kw)
        assert [o.token_ids for o in outs] == [o.token_ids for o in base], kw


def test_guided_requests_make_the_engine_wait_for_tokens(model_dir):
    with LLM(str(model_dir), dtype="float32", device="cpu", num_gpu_blocks_override=64) as llm:
        sched = llm.core.scheduler
        assert not sched.needs_known_tokens
        llm.core.add_request("g", [5, 6, 7], SamplingParams(max_tokens=4, guided=GuidedDecoding(choice=["yes", "no"])))
        assert sched.needs_known_tokens and sched.num_guided_requests == 1
        texts = []
        while llm.core.has_unfinished_requests():
            texts += [o.outputs[0].text for o in llm.core.step() if o.finished]
        assert texts in (["yes"], ["no"]) and not sched.needs_known_tokens
        with pytest.raises(ConfigError, match="grammar"):
            llm.core.add_request("bad", [5], SamplingParams(guided=GuidedDecoding(grammar="root ::= ")))
        assert sched.num_guided_requests == 0 and llm.core._guided.num_live == 0


@pytest.mark.slow  # two rank processes start (~20 s on 2 CPU cores)
def test_guided_under_tensor_parallel_2_matches_tp1(model_dir):
    """The masks travel in the pickled SchedulerOutput to rank processes (2 ranks over gloo)."""
    base, _ = _run(model_dir, num_gpu_blocks_override=256)
    tp2, _ = _run(model_dir, num_gpu_blocks_override=256, tensor_parallel_size=2)
    assert [o.token_ids for o in tp2] == [o.token_ids for o in base]


def test_a_grammar_that_is_complete_ends_before_min_tokens_with_a_stop_token(tmp_path):
    # the grammar then allows only end ids, which min_tokens bans: the row had no token left and sampled one the
    # grammar refuses (id 0 here), after the finished answer; the grammar's end wins, with the model's EOS
    write_tiny_checkpoint(tmp_path, "llama", dtype="float32", num_shards=1,
                          config_overrides={"vocab_size": 420, "bos_token_id": None, "eos_token_id": 2})
    write_tokenizer_dir(tmp_path)
    with LLM(str(tmp_path), dtype="float32", device="cpu", num_gpu_blocks_override=64) as llm:
        for temperature in (0.0, 1.0):
            params = SamplingParams(temperature=temperature, seed=1, max_tokens=12, min_tokens=6,
                                    guided=GuidedDecoding(choice=["yes", "no"]))
            out = llm.generate([[5, 6, 7]], [params])[0].outputs[0]
            assert out.text in ("yes", "no") and out.finish_reason == "stop", out
            assert out.token_ids[-1] == 2 and len(out.token_ids) < 6, out.token_ids
