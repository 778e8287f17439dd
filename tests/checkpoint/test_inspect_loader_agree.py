"""inspect-shards on single-file / index-less checkpoints, grep-able findings off a TTY, the FP8 wording, the one TP
rule shared by planner and loader, hub-cache symlinks still allowed, and `serve` failing at load."""

from __future__ import annotations

import json
import os
import sys

import pytest
from typer.testing import CliRunner

from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.cli.main import app
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.errors import CheckpointError
from vdeploy.models.loader import load_model


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ds") / "ds", "deepseek_v3", fp8=True, num_shards=3,
                                  config_overrides={"intermediate_size": 128, "moe_intermediate_size": 128})


@pytest.mark.parametrize("layout", ["single", "no_index", "bad_index"])
def test_inspect_shards_renders_every_layout(tmp_path, layout):
    root = write_tiny_checkpoint(tmp_path / "m", "llama", num_shards=1 if layout == "single" else 2)
    if layout == "no_index":
        (root / "model.safetensors.index.json").unlink()
    elif layout == "bad_index":
        (root / "model.safetensors.index.json").write_text("{")
    result = CliRunner().invoke(app, ["inspect-shards", str(root), "--gpu-memory", "24"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "Totals:" in result.output
    assert result.exit_code == (1 if layout == "bad_index" else 0)


def test_findings_are_one_grepable_line_each_off_a_tty(ds, tmp_path):
    import shutil

    root = tmp_path / "x"
    shutil.copytree(ds, root)
    cfg = json.loads((root / "config.json").read_text())
    cfg["num_hidden_layers"] = 2
    (root / "config.json").write_text(json.dumps(cfg))
    result = CliRunner().invoke(app, ["inspect-shards", str(root), "--gpu-memory", "24"], terminal_width=60)
    lines = [line for line in result.output.splitlines() if "unexpected_tensor" in line and "more findings" not in line]
    assert lines and all(".safetensors  model.layers." in line for line in lines), lines
    assert any("model-00002-of-000003.safetensors  model.layers.3.mlp.gate.e_score_correction_bias" in line
               for line in lines)


def test_fp8_checkpoint_is_not_called_unquantized(ds):
    fmt = inspect_checkpoint(ds, gpu_memory_gb=[24]).storage.weight_format
    assert fmt.startswith("FP8 e4m3") and "not quantized" not in fmt


def test_planner_and_loader_agree_on_tp(ds):
    report = inspect_checkpoint(ds, gpu_memory_gb=[80], tp_sizes=[1, 2])
    verdicts = {p.tp: p for p in report.plans[0].plans}
    assert verdicts[1].verdict == "fits" and verdicts[2].verdict == "does_not_fit"
    assert "FP8 blocks" in verdicts[2].advice and "config" not in verdicts[2].advice
    cfg = ModelConfig.from_path(ds)
    with pytest.raises(CheckpointError, match="FP8 blocks") as info:
        load_model(EngineConfig(model=str(ds)), cfg, ParallelState(0, 2), "cpu", "float32", quiet=True)
    assert "--tp 1" in info.value.hint


def test_symlinks_into_a_hub_blob_store_still_load(tmp_path):
    """The Hugging Face cache layout: snapshots/<rev>/<file> -> ../../blobs/<sha256>."""
    ds = write_tiny_checkpoint(tmp_path / "src", "llama", num_shards=2)
    repo = tmp_path / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(ds.iterdir())):
        blob = blobs / (f"{i:064x}")
        blob.write_bytes(f.read_bytes())
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    assert not inspect_checkpoint(snap, gpu_memory_gb=[24]).has_errors
    load_model(EngineConfig(model=str(snap)), ModelConfig.from_path(snap), ParallelState(), "cpu", "float32",
               quiet=True)


def test_serve_fails_at_load_naming_file_and_tensor(ds, tmp_path, monkeypatch, capsys):
    import shutil

    from vdeploy.cli.main import run
    from vdeploy.testing.corruption_battery import DS_SCALE, _poke

    root = tmp_path / "bad"
    shutil.copytree(ds, root)
    where = _poke(root, DS_SCALE, b"\x00\x00\x80\x7f")
    monkeypatch.delenv("VDEPLOY_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["vdeploy", "serve", str(root), "--port", "0", "--dtype", "float32"])
    with pytest.raises(SystemExit) as exited:
        run()
    err = capsys.readouterr().err.replace("\n", "")
    assert exited.value.code not in (0, None)
    assert "Traceback" not in err and where.file in err and where.tensor in err


def test_generate_subprocess_has_no_traceback(ds, tmp_path):
    import shutil
    import subprocess

    from vdeploy.testing.corruption_battery import _traversal

    root = tmp_path / "ckpt"
    shutil.copytree(ds, root)
    where = _traversal(root)
    env = {k: v for k, v in os.environ.items() if k != "VDEPLOY_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "vdeploy", "generate", str(root), "-p", "hi", "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=120)
    err = done.stderr.replace("\n", "")
    assert done.returncode == 2 and "Traceback" not in err
    assert "../stolen.safetensors" in err and where.tensor in err and "outside the model directory" in err
