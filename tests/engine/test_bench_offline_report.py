"""`vdeploy.bench.offline` on tiny real models: both backends run the same workload and count the same tokens."""

import json

import pytest

from vdeploy.bench.offline import Workload, run_offline_benchmark
from vdeploy.checkpoint.synthetic import tiny_config, write_tiny_checkpoint
from vdeploy.engine.llm import build_engine_config


def test_workload_lengths_fixed_and_ranged():
    assert Workload(3, 10, 5).lengths() == [(10, 5)] * 3
    ranged = Workload(200, 100, 50, random_range_ratio=0.5, seed=1).lengths()
    assert all(50 <= i <= 150 and 25 <= o <= 75 for i, o in ranged)
    assert len({i for i, _ in ranged}) > 10 and ranged == Workload(200, 100, 50, 0.5, 1).lengths()
    prompts, outs = Workload(4, 7, 3).prompts(vocab_size=100)
    assert [len(p) for p in prompts] == [7] * 4 and outs == [3] * 4 and all(0 < t < 100 for p in prompts for t in p)


@pytest.mark.parametrize("load_format", ["safetensors", "dummy"])
def test_compare_hf_runs_the_same_workload(tmp_path, load_format):
    if load_format == "dummy":  # a bare config.json: random weights on both sides
        tmp_path.joinpath("config.json").write_text(json.dumps(tiny_config("llama", dtype="float32")))
    else:
        write_tiny_checkpoint(tmp_path, "qwen2", dtype="float32", num_shards=1)
    config = build_engine_config(str(tmp_path), dtype="float32", device="cpu", load_format=load_format)
    report = run_offline_benchmark(config, Workload(3, 8, 4, random_range_ratio=0.5), compare_hf=True, command="t")
    vd, hf = report["results"]
    assert (vd["backend"], hf["backend"]) == ("vdeploy", "hf")
    expected_out = sum(o for _, o in Workload(3, 8, 4, random_range_ratio=0.5).lengths())
    assert vd["output_tokens"] == expected_out
    assert hf["output_tokens"] == expected_out  # batch size 1: no padding overshoot
    assert vd["input_tokens"] == hf["input_tokens"]
    assert report["speedup_output_tokens_per_s"] > 0 and report["load_format"] == load_format


def test_a_workload_longer_than_max_model_len_is_refused_not_cut_short(tmp_path):
    from vdeploy.errors import ConfigError

    tmp_path.joinpath("config.json").write_text(json.dumps(tiny_config("llama", dtype="float32")))
    config = build_engine_config(str(tmp_path), dtype="float32", device="cpu", load_format="dummy", max_model_len=6)
    with pytest.raises(ConfigError, match="needs 8 tokens .* max_model_len 6"):
        run_offline_benchmark(config, Workload(2, 4, 4), command="t")
