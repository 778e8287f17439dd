"""`vdeploy profiles list|show|match` through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from foundation_reference_configs import write_reference_model
from typer.testing import CliRunner

from vdeploy.cli.main import app

ENV = {"COLUMNS": "160", "NO_COLOR": "1"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def test_list_json_and_table():
    data = json.loads(invoke("profiles", "list", "--json").stdout)
    by_name = {p["name"]: p for p in data["profiles"]}
    assert by_name["deepseek-r1-2x8xh100"]["pipeline_parallel_size"] == 2
    assert by_name["demo-cpu"]["gpu_count"] == 0
    table = invoke("profiles", "list").stdout
    assert "deepseek-r1-8xh200" in table and "8 x 1" in table and "CPU" in table


def test_show_json_and_commented_yaml():
    data = json.loads(invoke("profiles", "show", "deepseek-r1-8xh200", "--json").stdout)
    assert data["engine"]["tensor_parallel_size"] == 8 and data["sampling"]["temperature"] == 0.6
    text = invoke("profiles", "show", "deepseek-r1-8xh200").stdout
    assert "# " in text and "tensor_parallel_size: 8" in text


def test_match_with_described_hardware(tmp_path):
    path = write_reference_model(tmp_path, "deepseek-r1")
    result = invoke("profiles", "match", path, "--gpus", "8", "--gpu-memory-gb", "141", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["selected"] == "deepseek-r1-8xh200" and data["quantization"] == "fp8"
    assert data["engine"]["tensor_parallel_size"] == 8 and data["hardware"]["source"] == "manual"
    assert data["rejected"] == []
    two_nodes = json.loads(invoke("profiles", "match", path, "--gpus", "8", "--nodes", "2", "--json").stdout)
    assert two_nodes["selected"] == "deepseek-r1-2x8xh100"


def test_match_explain_and_no_match_exit_code(tmp_path):
    path = write_reference_model(tmp_path, "deepseek-r1")
    result = invoke("profiles", "match", path, "--gpus", "8", "--gpu-memory-gb", "80", "--explain")
    assert result.exit_code == 1
    assert "no matching profile" in result.stdout
    assert "deepseek-r1-2x8xh100: needs 2 nodes" in result.stdout
    data = json.loads(invoke("profiles", "match", path, "--gpus", "8", "--explain", "--json").stdout)
    assert data["selected"] is None and {r["name"] for r in data["rejected"]} >= {"deepseek-r1-8xh200"}


def test_match_cpu_machine(tmp_path):
    path = write_reference_model(tmp_path, "deepseek-r1-distill-qwen-1.5b")
    data = json.loads(invoke("profiles", "match", path, "--gpus", "0", "--json").stdout)
    assert data["selected"] == "demo-cpu" and data["hardware"]["gpu_count"] == 0


def test_known_error_is_one_line_with_hint_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "vdeploy", "profiles", "show", "deepseek-r1-8xh20"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **ENV})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: no profile named 'deepseek-r1-8xh20'", "hint: did you mean 'deepseek-r1-8xh200'?"]
    debug = subprocess.run([sys.executable, "-m", "vdeploy", "--debug", "profiles", "show", "nope"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **ENV})
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_bad_compute_capability_is_usage_error(tmp_path):
    path = write_reference_model(tmp_path, "deepseek-r1")
    result = invoke("profiles", "match", path, "--gpus", "8", "--compute-capability", "nine")
    assert result.exit_code == 2 and "MAJOR.MINOR" in result.output
