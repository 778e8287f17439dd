"""LLM (offline API) and the generate/bench commands over the fake executor, patched in at the executor factory."""

import json
from types import SimpleNamespace

import pytest
from engine_fake_executor import TINY_LLAMA, PagedTokenExecutor, reference_generation
from engine_test_tokenizer import write_tokenizer_dir
from typer.testing import CliRunner

import vdeploy.executor
from vdeploy.engine.llm import LLM, build_engine_config
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError


@pytest.fixture
def model(tmp_path, monkeypatch):
    write_tokenizer_dir(tmp_path)
    raw = dict(TINY_LLAMA.raw, vocab_size=420, max_position_embeddings=512)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.0, "top_p": 0.9}))
    created = []

    def fake_create_executor(engine_config, model_config):
        ex = PagedTokenExecutor(engine_config.cache.block_size, engine_config.cache.num_gpu_blocks_override or 64, vocab=420)
        created.append((engine_config, ex))
        return ex

    monkeypatch.setattr(vdeploy.executor, "create_executor", fake_create_executor)
    return SimpleNamespace(path=tmp_path, created=created)


def test_keyword_arguments_map_onto_engine_config(model):
    cfg = build_engine_config(str(model.path), block_size=8, max_num_batched_tokens=32, enable_prefix_caching=False,
                              tensor_parallel_size=2, dtype="float32", cpu_kv_bytes=1 << 20, load_format="dummy")
    assert (cfg.cache.block_size, cfg.scheduler.max_num_batched_tokens, cfg.cache.enable_prefix_caching) == (8, 32, False)
    assert (cfg.parallel.tensor_parallel_size, cfg.dtype, cfg.cache.cpu_kv_cache_bytes, cfg.load_format) == (2, "float32", 1 << 20, "dummy")
    with pytest.raises(ConfigError, match="unknown engine option"):
        build_engine_config(str(model.path), blok_size=8)


def test_generate_accepts_text_token_ids_and_batches_in_order(model):
    llm = LLM(str(model.path), block_size=4, num_gpu_blocks_override=32)
    assert model.created[0][0].cache.block_size == 4
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
    text_ids = llm.tokenizer.encode("Hello world")
    outs = llm.generate(["Hello world", [1, 2, 3], "The end"], params)
    assert [o.prompt_token_ids for o in outs] == [text_ids, [1, 2, 3], llm.tokenizer.encode("The end")]
    assert outs[1].outputs[0].token_ids == reference_generation([1, 2, 3], 5, vocab=420)
    (single,) = llm.generate([4, 5, 6], params)
    assert single.outputs[0].token_ids == reference_generation([4, 5, 6], 5, vocab=420)
    assert outs[0].outputs[0].text == llm.tokenizer.decode(outs[0].outputs[0].token_ids)
    (multi,) = llm.generate("Hi", SamplingParams(n=3, temperature=1.0, seed=3, max_tokens=4, ignore_eos=True))
    assert [c.index for c in multi.outputs] == [0, 1, 2] and all(len(c.token_ids) == 4 for c in multi.outputs)
    with pytest.raises(ConfigError):
        llm.generate(["a", "b"], [params])
    llm.close()
    assert model.created[0][1].shut_down


def test_chat_defaults_from_generation_config_and_stream_abort(model):
    llm = LLM(str(model.path), block_size=4)
    assert llm.default_sampling_params().temperature == 0.0 and llm.default_sampling_params().top_p == 0.9
    conv = [{"role": "user", "content": "Hello"}]
    (one,) = llm.chat(conv)
    two = llm.chat([conv, conv + [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "end"}]])
    assert one.prompt_token_ids == llm.encode_chat(conv) == two[0].prompt_token_ids
    assert one.outputs[0].token_ids == two[0].outputs[0].token_ids and len(one.outputs[0].token_ids) <= 16
    stream = llm.generate_stream([1, 2, 3, 4, 5, 6, 7, 8, 9], SamplingParams(max_tokens=100, ignore_eos=True))
    next(stream)
    next(stream)
    stream.close()  # the caller stopped early: the request is aborted and its blocks freed
    stats = llm.core.stats()
    assert stats.num_running == 0 and stats.num_free_blocks == stats.num_total_blocks


def test_generate_command_streams_and_reports_json(model):
    from vdeploy.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", str(model.path), "--prompt", "Hello", "--max-tokens", "6", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["completion_tokens"] <= 6 and report["finish_reason"] in ("stop", "length")
    assert report["prompt_tokens"] > 1  # the chat template was applied
    raw_args = ["generate", str(model.path), "-p", "Hello", "--max-tokens", "8", "--no-chat", "--temperature", "0"]
    res = runner.invoke(app, raw_args + ["--json"])
    assert res.exit_code == 0, res.output
    raw = json.loads(res.stdout)
    assert raw["prompt_tokens"] == 1  # "Hello" alone, no template
    streamed = runner.invoke(app, raw_args)
    assert streamed.exit_code == 0 and streamed.stdout == raw["text"] + "\n"


def test_bench_command_offline_report(model, tmp_path_factory):
    from vdeploy.cli.main import app

    out_file = tmp_path_factory.mktemp("bench") / "r.json"
    res = CliRunner().invoke(
        app,
        ["bench", str(model.path), "--num-prompts", "5", "--input-len", "12", "--output-len", "7",
         "--random-range-ratio", "0.5", "--temperature", "0.7", "--json", "--output", str(out_file)],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert json.loads(out_file.read_text()) == report
    assert report["workload"]["temperature"] == 0.7  # sampled, as vLLM's benchmarks sample (at 1.0)
    (result,) = report["results"]
    assert result["backend"] == "vdeploy" and result["num_requests"] == 5
    assert result["output_tokens"] == sum(o for _, o in _lengths(report["workload"]))
    assert result["output_tokens_per_s"] > 0 and report["device"] and report["date"] and report["command"].startswith("vdeploy")
    phases = result["extra"]["phases"]  # every prompt prefilled by then; the decode after it fills the rest
    assert 0 <= phases["all_prefilled_s"] <= result["elapsed_s"] + 1e-4
    assert phases["all_prefilled_s"] + phases["decode_after_s"] == pytest.approx(result["elapsed_s"], abs=2e-3)


def _lengths(workload):
    from vdeploy.bench.offline import Workload

    return Workload(**workload).lengths()
