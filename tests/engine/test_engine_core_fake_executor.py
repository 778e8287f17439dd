"""EngineCore end to end over the paged fake executor: outputs must match an unpaged reference whatever the
budget, prefix caching or KV pool size; n>1 sampling, aborts, stop strings and stats."""

import json

import pytest
from engine_fake_executor import TINY_LLAMA as MODEL
from engine_fake_executor import PagedTokenExecutor, reference_generation
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer
from vdeploy.errors import ConfigError


def make_engine(tmp_path, *, num_blocks=64, block_size=4, budget=4096, caching=True, max_model_len=None, tokenizer=None, vocab=1000,
                async_scheduling=True):
    cfg = EngineConfig(
        model=str(tmp_path),
        cache=CacheConfig(block_size=block_size, enable_prefix_caching=caching),
        scheduler=SchedulerConfig(max_num_batched_tokens=budget, max_model_len=max_model_len,
                                  async_scheduling=async_scheduling),
    )
    ex = PagedTokenExecutor(block_size, num_blocks, vocab=vocab)
    return EngineCore(cfg, model_config=MODEL, executor=ex, tokenizer=tokenizer), ex


def run(engine, prompts, params):
    for i, p in enumerate(prompts):
        engine.add_request(f"r{i}", p, params)
    final = {}
    for _ in range(10_000):
        if not engine.has_unfinished_requests():
            break
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return [final[f"r{i}"] for i in range(len(prompts))]


PROMPTS = [[(7 * i + j) % 997 for j in range(n)] for i, n in enumerate([5, 23, 40, 9, 17, 31])]
PROMPTS.append(PROMPTS[2][:36] + [1, 2, 3])  # shares 9 blocks with prompt 2


@pytest.mark.parametrize(
    "num_blocks, budget, caching", [(64, 4096, True), (64, 16, True), (64, 4096, False), (64, 16, False), (14, 16, True), (14, 4096, False)]
)
def test_greedy_tokens_match_reference_for_any_budget_cache_and_pool(tmp_path, num_blocks, budget, caching):
    engine, _ = make_engine(tmp_path, num_blocks=num_blocks, budget=budget, caching=caching)
    outs = run(engine, PROMPTS, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    for prompt, out in zip(PROMPTS, outs):
        assert out.outputs[0].token_ids == reference_generation(prompt, 12)
        assert out.outputs[0].finish_reason == "length"
    stats = engine.stats()
    if num_blocks == 14:
        assert stats.num_preemptions > 0  # the tiny pool really forced recomputation
    if caching and num_blocks == 64:
        assert stats.prefix_cache_hits >= 36
    assert stats.num_free_blocks == stats.num_total_blocks == num_blocks
    assert stats.prompt_tokens_total == sum(map(len, PROMPTS))
    assert stats.generation_tokens_total == 12 * len(PROMPTS)


def test_seeded_n4_sampling_is_reproducible_and_samples_differ(tmp_path):
    params = SamplingParams(n=4, temperature=1.0, seed=1234, max_tokens=8, ignore_eos=True)
    first = run(make_engine(tmp_path)[0], [PROMPTS[1]], params)[0]
    second = run(make_engine(tmp_path)[0], [PROMPTS[1]], params)[0]
    by_index = lambda out: {c.index: c.token_ids for c in out.outputs}
    assert first.finished and sorted(by_index(first)) == [0, 1, 2, 3]
    assert by_index(first) == by_index(second)
    assert len({tuple(t) for t in by_index(first).values()}) == 4
    single = run(make_engine(tmp_path)[0], [PROMPTS[1]], SamplingParams(temperature=1.0, seed=1234, max_tokens=8, ignore_eos=True))[0]
    assert single.outputs[0].token_ids == by_index(first)[0]


def test_n4_samples_share_the_prompt_blocks(tmp_path):
    engine, ex = make_engine(tmp_path, async_scheduling=False)  # counts the blocks of exactly one step
    engine.add_request("r", PROMPTS[2], SamplingParams(n=4, temperature=0, max_tokens=2))
    engine.step()
    # 40 prompt tokens: sample 0 computes them, the other three reuse 9 of its 10 blocks
    assert ex.steps[0].num_scheduled_tokens == 40 + 3 * 4
    assert engine.stats().num_free_blocks == 64 - 10 - 3 * 1


def test_abort_releases_blocks_and_reports_abort(tmp_path):
    engine, _ = make_engine(tmp_path)
    engine.add_request("a", PROMPTS[2], SamplingParams(max_tokens=50, ignore_eos=True))
    engine.add_request("b", PROMPTS[1], SamplingParams(max_tokens=50, ignore_eos=True))
    engine.step()
    engine.abort_request(["a", "missing"])
    outs = {o.request_id: o for o in engine.step()}
    assert outs["a"].finished and outs["a"].outputs[0].finish_reason == "abort"
    assert not outs["b"].finished
    assert engine.stats().num_running == 1
    engine.abort_request(["b"])
    engine.step()
    assert engine.stats().num_free_blocks == 64 and not engine.has_unfinished_requests()


def test_streamed_deltas_add_up_and_stop_string_ends_generation(tmp_path):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    engine, _ = make_engine(tmp_path, tokenizer=tok, vocab=tok.vocab_size)
    prompt = tok.encode("Hello")
    full = reference_generation(prompt, 30, vocab=tok.vocab_size)
    text = tok.decode(full)
    stop = text[10:13]
    engine.add_request("s", prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop]))
    deltas, ids, final = [], [], None
    while engine.has_unfinished_requests():
        for out in engine.step():
            deltas.append(out.outputs[0].delta_text)
            ids.extend(out.outputs[0].delta_token_ids)
            final = out
    comp = final.outputs[0]
    assert comp.finish_reason == "stop" and comp.stop_reason == stop
    assert "".join(deltas) == comp.text == text[: text.index(stop)]
    assert ids == comp.token_ids == full[: len(ids)] and len(ids) < 30


def test_generation_defaults_max_model_len_and_validation(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.6, "top_p": 0.95, "eos_token_id": [5, 6]}))
    engine, _ = make_engine(tmp_path, num_blocks=8)
    assert engine.generation_defaults == {"temperature": 0.6, "top_p": 0.95}
    assert set(engine.eos_token_ids) == {5, 6, 999}
    assert engine.max_model_len == 32  # 8 blocks x 4 tokens, below max_position_embeddings
    with pytest.raises(ConfigError, match="max_model_len"):
        engine.add_request("x", list(range(33)))
    with pytest.raises(ConfigError, match="more KV cache"):
        make_engine(tmp_path, num_blocks=8, max_model_len=64)
    engine.add_request("y", [1, 2])
    with pytest.raises(ConfigError, match="duplicate"):
        engine.add_request("y", [1, 2])
