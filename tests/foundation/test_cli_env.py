"""`vdeploy env check` end to end: faked probes through the CLI (exit codes, --json), a real run on this machine,
and a run with torch made unimportable (env check is what people run before installing torch)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from foundation_fakes import cpu_software, cuda_software, h100_box, h200_box, host, no_gpu
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.env import hardware, software
from vdeploy.env import host as host_module

ENV = {"COLUMNS": "100", "NO_COLOR": "1"}


def fake_machine(monkeypatch, hw, sw, h):
    monkeypatch.setattr(hardware, "detect_hardware", lambda: hw)
    monkeypatch.setattr(software, "detect_software", lambda: sw)
    monkeypatch.setattr(host_module, "detect_host", lambda env=None: h)


def test_h200_box_json_and_exit_zero(monkeypatch):
    fake_machine(monkeypatch, h200_box(), cuda_software(), host())
    result = CliRunner().invoke(app, ["env", "check", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["ok"] is True and data["mode"] == "gpu"
    assert data["summary"] == {"pass": len(data["checks"]), "warn": 0, "fail": 0}
    assert data["hardware"]["interconnect"]["kind"] == "nvlink"
    assert data["software"]["nccl_version"] == "2.27.3"


def test_driver_too_old_exits_one_and_table_shows_remedy(monkeypatch):
    fake_machine(monkeypatch, h100_box(driver="550.54.15", cuda="12.4"), cuda_software("13.0"), host())
    result = CliRunner().invoke(app, ["env", "check"], env=ENV)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "not ready" in result.stdout
    assert "whl/cu124" in result.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_cpu_mode_exit_zero(monkeypatch):
    fake_machine(monkeypatch, no_gpu(), cpu_software(), host())
    result = CliRunner().invoke(app, ["env", "check", "--json"], env=ENV)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["mode"] == "cpu"


def test_tp_option_validated_as_usage_error():
    result = CliRunner().invoke(app, ["env", "check", "--tp", "0"], env=ENV)
    assert result.exit_code == 2


def _run_cli(args: list[str], code_prefix: str = "") -> subprocess.CompletedProcess:
    code = code_prefix + "import sys\nfrom vdeploy.cli.main import run\nsys.argv = ['vdeploy', *sys.argv[1:]]\nrun()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **ENV})


def test_real_run_on_this_machine():
    done = _run_cli(["env", "check", "--json"])
    data = json.loads(done.stdout)
    assert done.returncode == (0 if data["ok"] else 1), done.stderr
    assert {c["status"] for c in data["checks"]} <= {"PASS", "WARN", "FAIL"}
    assert data["software"]["python_version"] == ".".join(map(str, sys.version_info[:3]))
    if shutil.which("nvidia-smi") is None:
        assert data["mode"] == "cpu" and data["hardware"]["gpus"] == []


BLOCK_TORCH = """\
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="asserts CPU-mode output")
def test_works_without_torch():
    done = _run_cli(["env", "check", "--json"], BLOCK_TORCH)
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["torch"]["status"] == "WARN" and "not installed" in checks["torch"]["message"]
    assert "whl/cpu" in checks["torch"]["remedy"]
