"""`env check --model PATH --tp N`: the fit verdict from the checkpoint planner on described hardware."""

from __future__ import annotations

import functools
import json

import pytest
from foundation_fakes import by_name, cpu_software, cuda_software, gpu_box, h100_box, h200_box, host, no_gpu
from foundation_reference_configs import write_reference_model
from typer.testing import CliRunner

from vdeploy.env.report import build_report


@pytest.fixture
def model_dir(tmp_path):
    return functools.partial(write_reference_model, tmp_path)


def test_r1_fits_8x_h200_as_fp8(model_dir):
    report = build_report(h200_box(), cuda_software(), host(), model=model_dir("deepseek-r1"), tp=8)
    check = by_name(report.checks)["model_fit"]
    assert check.status == "PASS" and report.ok
    assert report.fit.verdict == "fits" and report.fit.tp == 8
    assert report.fit.fp8_path == "w8a8-block-fp8-gemm"
    assert 600e9 < report.fit.params_total < 720e9


def test_r1_does_not_fit_8x_h100(model_dir):
    report = build_report(h100_box(), cuda_software(), host(), model=model_dir("deepseek-r1"), tp=8)
    check = by_name(report.checks)["model_fit"]
    assert check.status == "FAIL" and not report.ok
    assert report.fit.verdict == "does_not_fit" and check.remedy


def test_fp8_checkpoint_on_ampere_is_dequantized(model_dir):
    a100 = gpu_box(8, "NVIDIA A100-SXM4-80GB", 81920 << 20, (8, 0))
    report = build_report(a100, cuda_software(), host(), model=model_dir("deepseek-r1"), tp=8)
    assert report.fit.fp8_path == "dequantize-to-bf16"
    assert "dequantized to bf16" in by_name(report.checks)["model_fit"].message


def test_cpu_mode_plans_against_ram(model_dir):
    report = build_report(no_gpu(), cpu_software(), host(), model=model_dir("deepseek-r1-distill-qwen-1.5b"))
    assert report.fit.device == "cpu" and report.fit.tp == 1 and report.fit.fp8_path is None
    assert report.fit.verdict == "fits"


def test_cli_model_option(monkeypatch, model_dir):
    from vdeploy.cli.main import app
    from vdeploy.env import hardware, software
    from vdeploy.env import host as host_module

    monkeypatch.setattr(hardware, "detect_hardware", lambda: h100_box(1))
    monkeypatch.setattr(software, "detect_software", lambda: cuda_software())
    monkeypatch.setattr(host_module, "detect_host", lambda env=None: host())
    path = model_dir("deepseek-r1-distill-llama-70b")
    result = CliRunner().invoke(app, ["env", "check", "--json", "--model", path, "--tp", "1"])
    data = json.loads(result.stdout)
    assert result.exit_code == 1  # 141 GB of bf16 weights on one 80 GB GPU
    assert data["fit"]["verdict"] == "does_not_fit" and data["fit"]["architecture"] == "LlamaForCausalLM"
    missing = CliRunner().invoke(app, ["env", "check", "--model", path + "-missing"])
    # a ConfigError: the real entry point (vdeploy.cli.main.run) prints it with a hint and exits 2
    assert missing.exit_code == 2 or getattr(missing.exception, "exit_code", None) == 2
