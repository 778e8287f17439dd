"""vLLM's habits accepted by `vdeploy serve` and friends (issue 16): --model, --trust-remote-code (with a note),
VLLM_USE_MODELSCOPE, size suffixes, a warning for each option that does nothing here, help readable at 80 columns."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from cli_testlib import vdeploy

from vdeploy.cli.vllm_compat import parse_size
from vdeploy.engine_settings import no_effect_warnings


def test_size_suffixes_as_vllm_parses_them():
    assert [parse_size(t) for t in ("32k", "32K", "16384", "1.5k", "1M")] == [32000, 32768, 16384, 1500, 1 << 20]
    for bad in ("32q", "0", "1.5", "-4k"):
        with pytest.raises(typer.BadParameter):
            parse_size(bad)


def test_no_effect_warnings_only_on_cpu():
    flags = {"gpu_memory_utilization": 0.5, "enforce_eager": True}
    assert len(no_effect_warnings(flags, cpu_only=True)) == 2
    assert no_effect_warnings(flags, cpu_only=False) == []
    assert no_effect_warnings({"gpu_memory_utilization": None, "enforce_eager": False}, cpu_only=True) == []


def test_serve_accepts_vllm_flags_and_says_what_they_do(tmp_path):
    # R1 cannot fit this CPU host: serve stops at the planner, after parsing every flag and printing its notes
    done = vdeploy("serve", "--model", "deepseek-r1", "--load-format", "dummy", "--trust-remote-code",
                   "--gpu-memory-utilization", "0.5", "--max-model-len", "32k", "--max-num-batched-tokens", "16K",
                   home=tmp_path)
    assert done.returncode == 1 and "does not fit" in done.stderr, done.stderr
    assert "never runs code from a model repository" in done.stderr
    assert "--gpu-memory-utilization has no effect" in done.stderr
    bad = vdeploy("serve", "--max-model-len", "32q", home=tmp_path)
    assert bad.returncode == 2 and "not a token count" in bad.stderr


def test_serve_model_named_twice_must_agree(tmp_path):
    done = vdeploy("serve", "deepseek-r1", "--model", "deepseek-v2-lite", home=tmp_path)
    assert done.returncode == 2 and "two models named" in done.stderr


@pytest.fixture
def not_found_endpoint(tmp_path):
    """A hub that answers 404 to everything: ModelScope's client gives up at once (a refused connection makes it
    retry for seconds)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_honours_vllm_use_modelscope(tmp_path, not_found_endpoint):
    endpoints = {"MODELSCOPE_ENDPOINT": not_found_endpoint, "HF_ENDPOINT": not_found_endpoint, "VDEPLOY_SOURCE": ""}
    for value, hub in (("True", "ModelScope"), ("False", "Hugging Face")):
        done = vdeploy("download", "nobody/nothing", "--json", home=tmp_path,
                       env={**endpoints, "VLLM_USE_MODELSCOPE": value})
        assert done.returncode != 0 and hub in json.loads(done.stdout)["error"], done.stdout


@pytest.mark.parametrize("command", [["serve"], ["bench"], ["generate"], ["env", "check"], ["inspect-shards"]])
def test_help_at_80_columns_cuts_no_option_name(tmp_path, command):
    done = vdeploy(*command, "-h", home=tmp_path, env={"COLUMNS": "80"})
    assert done.returncode == 0
    assert "…" not in done.stdout and max(map(len, done.stdout.splitlines())) <= 80
    if command == ["serve"]:
        assert "--tp, --tensor-parallel-size" in done.stdout and "--pp, --pipeline-parallel-size" in done.stdout
