"""Hub ids and bundled config names wherever a model is named (issue 16): env check and profiles match read the
bundled config; serve/generate/bench say how to run a bundled name (dummy weights or `vdeploy download`)."""

from __future__ import annotations

import json

from cli_testlib import vdeploy
from typer.testing import CliRunner

from vdeploy.cli.main import app


def _env_check(monkeypatch, tmp_path, *args: str):
    """In-process (CliRunner): the probes cost seconds once per process, not once per test."""
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    return CliRunner().invoke(app, ["env", "check", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_env_check_hub_id_fit_at_requested_tp(monkeypatch, tmp_path):
    done = _env_check(monkeypatch, tmp_path, "--model", "deepseek-ai/DeepSeek-R1", "--tp", "8", "--gpu-memory", "141",
                      "--json")
    fit = json.loads(done.stdout)["fit"]
    assert fit["architecture"] == "DeepseekV3ForCausalLM" and fit["tp"] == 8 and fit["pp"] == 1
    assert fit["verdict"] == "fits" and fit["target"] == "8 x 141 GB GPUs"
    check = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "model_fit")
    assert "TP8 on 131 GiB per GPU" in check["message"]


def test_env_check_bundled_name_on_this_host_plans_every_rank(monkeypatch, tmp_path):
    done = _env_check(monkeypatch, tmp_path, "--model", "deepseek-r1", "--tp", "8", "--pp", "2")
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    out = " ".join(done.stdout.split())
    assert "TP8 x PP2" in out and "planned as one host" not in out and "(TP 1)" not in out


def test_env_check_unknown_model_lists_bundled_names(tmp_path):
    done = vdeploy("env", "check", "--model", "nobody/nothing", home=tmp_path)
    assert done.returncode == 2
    assert "deepseek-r1-distill-qwen-7b" in done.stderr and "vdeploy download" in done.stderr


def test_profiles_match_hub_id(tmp_path):
    done = vdeploy("profiles", "match", "deepseek-ai/DeepSeek-R1", "--gpus", "8", "--gpu-memory-gb", "141", "--json",
                   home=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "deepseek-ai/DeepSeek-R1" and result["architecture"] == "DeepseekV3ForCausalLM"
    assert "deepseek-r1" in done.stdout


def test_serve_generate_bench_bundled_name_say_how(tmp_path):
    for argv in (["serve", "deepseek-r1"], ["generate", "deepseek-ai/DeepSeek-R1", "-p", "hi"],
                 ["bench", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]):
        done = vdeploy(*argv, home=tmp_path)
        assert done.returncode == 2, (argv, done.stderr)
        assert "--load-format dummy" in done.stderr and "vdeploy download deepseek-ai/DeepSeek-R1" in done.stderr
        assert "neither a model directory" not in done.stderr


def test_serve_hub_id_with_dummy_uses_bundled_config(tmp_path):
    # R1 cannot fit this host: the planner refuses before anything loads, after the note about dummy weights
    for flag, env in ((["--load-format", "dummy"], None), ([], {"VDEPLOY_LOAD_FORMAT": "dummy"})):
        done = vdeploy("serve", "--model", "deepseek-ai/DeepSeek-R1", *flag, home=tmp_path, env=env)
        assert "bundled config deepseek-r1" in done.stderr and "random weights" in done.stderr, (env, done.stderr)
        assert done.returncode == 1 and "does not fit" in done.stderr


def test_inspect_shards_of_a_bundled_config_says_what_works(tmp_path):
    done = vdeploy("inspect-shards", "deepseek-ai/DeepSeek-R1", home=tmp_path)
    assert done.returncode == 2 and "does not exist" not in done.stderr
    assert "vdeploy show deepseek-ai/DeepSeek-R1" in done.stderr
    assert "vdeploy download deepseek-ai/DeepSeek-R1" in done.stderr


def test_an_error_quoting_brackets_is_printed_as_text(tmp_path):
    # a path (or gloo's "[/path/pair.cc:553] Connection closed") is text: read as Rich markup, the closing tag made
    # printing the error itself fail with a MarkupError traceback
    done = vdeploy("serve", str(tmp_path / "nope[/x]" / "model"), home=tmp_path)
    assert "nope[/x]" in done.stderr and "no such model directory" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.returncode == 2
