"""OutputKind.DELTA (what the engine-core process reports): each output holds only what is new, and joined up the
deltas are exactly the CUMULATIVE run's answer — text, token ids, finish and stop reasons — with stop strings,
n > 1 and asynchronous scheduling; FINAL_ONLY reports each request once. (Logprobs through DELTA: the server tests,
whose engine runs in its own process.)"""

import pytest
from engine_fake_executor import TINY_LLAMA as MODEL
from engine_fake_executor import PagedTokenExecutor
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.outputs import OutputKind
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer


def make_engine(tmp_path, tok, async_scheduling):
    cfg = EngineConfig(model=str(tmp_path), cache=CacheConfig(block_size=4),
                       scheduler=SchedulerConfig(max_num_batched_tokens=64, async_scheduling=async_scheduling))
    return EngineCore(cfg, model_config=MODEL, executor=PagedTokenExecutor(4, 64, vocab=tok.vocab_size),
                      tokenizer=tok)


def requests(tok):
    hello, world = tok.encode("Hello"), tok.encode("The end is near, world")
    return [
        ("plain", hello, SamplingParams(temperature=0, max_tokens=25, ignore_eos=True)),
        ("n3", world, SamplingParams(temperature=1.0, seed=7, n=3, max_tokens=12, ignore_eos=True)),
        ("stop", hello, SamplingParams(temperature=0, max_tokens=25, ignore_eos=True, stop=["e", "o"])),
    ]


def collect(engine, kind, tok):
    for rid, prompt, params in requests(tok):
        engine.add_request(rid, prompt, params, output_kind=kind)
    outputs = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
    return outputs


def answers_from_deltas(outs):
    answers = {}
    for out in outs:
        for c in out.outputs:
            a = answers.setdefault(c.index, {"text": "", "ids": [], "logprobs": [], "finish": None})
            assert c.text == c.delta_text and c.token_ids == c.delta_token_ids  # a delta, not the answer so far
            a["text"] += c.text
            a["ids"] += c.token_ids
            a["logprobs"] += c.logprobs or []
            a["finish"] = (c.finish_reason, c.stop_reason)
    return answers


def answers_of(final):
    return {c.index: {"text": c.text, "ids": c.token_ids, "logprobs": c.logprobs or [],
                      "finish": (c.finish_reason, c.stop_reason)} for c in final.outputs}


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_deltas_join_up_to_the_cumulative_answer(tmp_path, async_scheduling):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    cumulative = collect(make_engine(tmp_path, tok, async_scheduling), OutputKind.CUMULATIVE, tok)
    delta = collect(make_engine(tmp_path, tok, async_scheduling), OutputKind.DELTA, tok)
    final_only = collect(make_engine(tmp_path, tok, async_scheduling), OutputKind.FINAL_ONLY, tok)
    assert set(cumulative) == set(delta) == set(final_only) == {"plain", "n3", "stop"}
    for rid in cumulative:
        expected = answers_of(cumulative[rid][-1])
        if rid == "n3":  # a cumulative output names only the samples that changed: take each one's last
            expected = {}
            for out in cumulative[rid]:
                expected.update(answers_of(out))
        assert answers_from_deltas(delta[rid]) == expected
        assert len(final_only[rid]) == 1 and answers_of(final_only[rid][0]) == expected
        assert delta[rid][-1].finished and not any(o.finished for o in delta[rid][:-1])
    assert answers_from_deltas(delta["stop"])[0]["finish"][0] == "stop"
