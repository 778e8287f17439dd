"""benchmarks/load_time.py end to end on CPU: writes a real tiny sharded checkpoint, measures raw reads and every
rank's load, and reports them in JSON; per-rank bytes shrink with the tensor-parallel size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vdeploy.checkpoint.synthetic import tiny_config
from vdeploy.models import shard_reader

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "load_time.py"
sys.path.insert(0, str(SCRIPT.parent))  # benchmarks/ is not a package

import load_time


def _tiny_config_file(tmp_path: Path) -> Path:
    # ~7 MB of bf16: big enough for several 2 MB shards, small enough for a CI second
    config = tiny_config("qwen2", overrides={
        "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 4,
        "vocab_size": 2048, "num_hidden_layers": 4})
    path = tmp_path / "tiny.config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("load_time")
    out = tmp_path / "result.json"
    command = [sys.executable, str(SCRIPT), "--config", str(_tiny_config_file(tmp_path)), "--dir",
               str(tmp_path / "ckpt"), "--write", "--shard-size-gb", "0.002", "--tp", "1", "2", "--device", "cpu",
               "--drop-caches", "--verify", "--out", str(out)]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout, tmp_path / "ckpt"


def test_json_describes_the_run_and_the_checkpoint(result):
    data, _, ckpt = result
    for key in ("date", "machine", "command", "git_rev", "checkpoint", "cache", "raw_read", "raw_read_after",
                "raw_reference_gb_per_s", "loads", "summary", "target_ratio"):
        assert key in data, key
    assert data["machine"]["cpu"] and data["machine"]["gpu"] is None
    assert "--write" in data["command"] and data["git_rev"]
    files = data["checkpoint"]["files"]
    on_disk = sorted(p.name for p in ckpt.glob("*.safetensors"))
    assert sorted(f["name"] for f in files) == on_disk and len(on_disk) > 1
    assert all(f["bytes"] == (ckpt / f["name"]).stat().st_size for f in files)
    assert data["checkpoint"]["total_bytes"] == sum(f["bytes"] for f in files)
    assert 0 < data["checkpoint"]["write"]["data_bytes"] < data["checkpoint"]["total_bytes"]  # headers excluded
    # the raw pass reads every byte of every shard
    assert data["raw_read"]["bytes"] == data["checkpoint"]["total_bytes"] and data["raw_read"]["gb_per_s"] > 0
    assert data["cache"]["method"] in ("drop_caches", "fadvise", "none")
    if data["cache"]["cold"]:
        assert data["raw_read"]["resident_before"] in (None, 0.0) or data["raw_read"]["resident_before"] < 0.05


def test_every_rank_of_every_tp_size_is_measured(result):
    data, stdout, _ = result
    assert [(x["tp"], x["rank"]) for x in data["loads"]] == [(1, 0), (2, 0), (2, 1)]
    for load in data["loads"]:
        assert load["weight_bytes"] > 0 and load["seconds"] > 0
        assert load["gb_per_s"] > 0 and load["ratio_to_raw"] > 0
        assert load["ratio_to_raw"] == pytest.approx(load["gb_per_s"] / data["raw_reference_gb_per_s"])
    # the reference is the faster of the raw passes before and after the loads
    assert data["raw_reference_gb_per_s"] == max(data["raw_read"]["gb_per_s"], data["raw_read_after"]["gb_per_s"])
    assert data["raw_read_after"]["bytes"] == data["raw_read"]["bytes"]
    assert set(data["summary"]) == {"1", "2"}
    assert data["summary"]["2"]["min_ratio_to_raw"] == min(x["ratio_to_raw"] for x in data["loads"][1:])
    assert data["summary"]["2"]["meets_target"] == (data["summary"]["2"]["min_ratio_to_raw"] >= 0.8)
    assert "ratio" in stdout and len(stdout.strip().splitlines()) == 2 + len(data["loads"])  # header + rows


def test_tp2_ranks_hold_about_half_of_tp1(result):
    data, _, _ = result
    full = data["loads"][0]["weight_bytes"]
    halves = [x["weight_bytes"] for x in data["loads"][1:]]
    assert halves[0] == halves[1]
    assert 0.5 <= halves[0] / full < 0.55  # only the norms are replicated


def test_no_second_copy_of_the_weights_on_the_host(result):
    data, _, _ = result
    for load in data["loads"]:
        if load["host_rss_growth_bytes"] is None:
            pytest.skip("no per-load RSS peak on this kernel")
        # a CPU model's weights live in host memory once; the slack covers allocator and page-table noise
        assert load["host_rss_growth_bytes"] < 1.5 * load["weight_bytes"] + (32 << 20)


def test_every_rank_matches_the_safetensors_library(result):
    data, _, _ = result
    assert [x["matches_reference"] for x in data["loads"]] == [True] * len(data["loads"])


@pytest.mark.parametrize("dtype", ["auto", "float32"])  # in place, and streamed through the staging chunks
def test_verify_catches_a_reader_that_drops_bytes(result, tmp_path, monkeypatch, dtype):
    """--verify is a real check: a reader that loses the last element of every column band fails it."""
    _, _, ckpt = result
    original = shard_reader.ShardTensorSlice._fill

    def lossy_fill(self, plan, begin, end, out):
        original(self, plan, begin, end, out)
        if plan.row_stride is not None:  # only row-span reads (TP column bands) go wrong
            out.view(-1, plan.run_bytes)[:, -1] = 0

    monkeypatch.setattr(shard_reader.ShardTensorSlice, "_fill", lossy_fill)
    out = tmp_path / "broken.json"
    status = load_time.main(["--dir", str(ckpt), "--tp", "2", "--device", "cpu", "--dtype", dtype, "--verify",
                             "--out", str(out)])
    assert status == 1
    assert [x["matches_reference"] for x in json.loads(out.read_text())["loads"]] == [False, False]
