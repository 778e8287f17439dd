"""The loader refuses what inspect-shards refuses: every corruption of the battery (vdeploy/testing/
corruption_battery.py), on a tiny FP8 DeepSeek-V3 and a sharded Llama in the real on-disk format, is
- reported by inspect-shards (headers; --verify-data for value corruptions) naming the file and tensor,
- refused by the loader with a CheckpointError naming the same file and tensor,
- and `vdeploy generate` exits non-zero with that message and no traceback."""

from __future__ import annotations

import shutil
import sys

import pytest

from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.errors import CheckpointError, VdeployError
from vdeploy.models.loader import load_model
from vdeploy.testing.corruption_battery import BATTERY

# MLP sizes of whole 128-wide FP8 blocks, so that the gate_up merge of the intact checkpoint loads
LOADABLE = {"intermediate_size": 128, "moe_intermediate_size": 128}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("bases")
    return {"ds": write_tiny_checkpoint(root / "ds", "deepseek_v3", fp8=True, num_shards=3, config_overrides=LOADABLE),
            "llama": write_tiny_checkpoint(root / "llama", "llama", num_shards=2)}


def _broken(bases, tmp_path, case):
    root = tmp_path / "ckpt"
    shutil.copytree(bases[case.base], root)
    return root, case.apply(root)


def _load(root, tp=1):
    cfg = ModelConfig.from_path(root)
    return load_model(EngineConfig(model=str(root)), cfg, ParallelState(0, tp), "cpu", "float32", quiet=True)


def test_battery_has_more_than_thirty_kinds():
    assert len({c.name for c in BATTERY}) == len(BATTERY) > 30


@pytest.mark.parametrize("case", [c for c in BATTERY if c.stage != "scan"], ids=lambda c: c.name)
def test_loader_refuses_naming_file_and_tensor(bases, tmp_path, case):
    root, where = _broken(bases, tmp_path, case)
    with pytest.raises(VdeployError) as info:
        _load(root, case.tp)
    assert isinstance(info.value, CheckpointError), info.value
    message = info.value.message
    if where.file is not None:
        assert where.file in message
    if where.tensor is not None:
        assert where.tensor in message
    assert info.value.hint and "vdeploy inspect`" not in info.value.hint
    assert info.value.exit_code != 0


@pytest.mark.parametrize("case", BATTERY, ids=lambda c: c.name)
def test_inspect_reports_it(bases, tmp_path, case):
    root, where = _broken(bases, tmp_path, case)
    report = inspect_checkpoint(root, gpu_memory_gb=[24], tp_sizes=[case.tp] if case.tp > 1 else None,
                                verify_data=case.stage != "header")
    errors = report.errors
    assert errors, [(f.kind, f.message) for f in report.findings]
    if where.tensor is not None:
        assert any(f.tensor == where.tensor for f in errors), [(f.kind, f.file, f.tensor) for f in errors]
    if where.file is not None:
        assert any(f.file == where.file for f in errors), [(f.kind, f.file, f.tensor) for f in errors]


@pytest.mark.parametrize("case", [c for c in BATTERY if c.stage != "scan"], ids=lambda c: c.name)
def test_generate_exits_non_zero_without_traceback(bases, tmp_path, case, monkeypatch, capsys):
    from vdeploy.cli.main import run

    root, where = _broken(bases, tmp_path, case)
    monkeypatch.delenv("VDEPLOY_DEBUG", raising=False)
    args = ["vdeploy", "generate", str(root), "-p", "hi", "--device", "cpu", "--max-tokens", "2",
            "--tp", str(case.tp)]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exited:
        run()
    err = capsys.readouterr().err
    assert exited.value.code not in (0, None), err
    assert "Traceback" not in err
    for name in (where.file, where.tensor):
        if name is not None:
            assert name in err.replace("\n", ""), err
