"""`vdeploy bench` (offline) takes its engine settings with the documented precedence, options > VDEPLOY_* >
--config FILE > defaults (docs/cli.md, docs/profiles.md), as serve does; and a setting the file (or the
environment) gives beside --speculative-config / --lora-modules is merged, not passed twice. Runs the real command
in-process on a tiny random-weight Llama on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vdeploy.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # the server tests' tiny checkpoint writer
from server_harness import write_tiny_model  # noqa: E402

WORKLOAD = ["--num-prompts", "1", "--input-len", "10", "--output-len", "10", "--device", "cpu", "--dtype", "float32",
            "--json"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["bench", *args], env={"COLUMNS": "200", "NO_COLOR": "1",
                                                         "VDEPLOY_HOME": str(tmp_path), **(env or {})})


def test_the_environment_sets_bench_settings_between_the_file_and_the_options(tiny_model, tmp_path):
    config = tmp_path / "engine.yaml"
    config.write_text("max-model-len: 64\n")
    # 10 + 10 tokens do not fit VDEPLOY_MAX_MODEL_LEN=16, which wins over the file's 64
    short = _bench(tmp_path, str(tiny_model), "--config", str(config), *WORKLOAD, env={"VDEPLOY_MAX_MODEL_LEN": "16"})
    assert short.exit_code != 0 and "max_model_len 16" in f"{short.output} {short.exception}", short.output
    # the option wins over the environment
    done = _bench(tmp_path, str(tiny_model), "--config", str(config), "--max-model-len", "32", *WORKLOAD,
                  env={"VDEPLOY_MAX_MODEL_LEN": "16"})
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["results"][0]["output_tokens"] == 10


def test_a_file_setting_beside_speculative_config_is_merged(tiny_model, tmp_path):
    config = tmp_path / "engine.yaml"
    config.write_text("num-speculative-tokens: 2\n")
    done = _bench(tmp_path, str(tiny_model), "--config", str(config), "--speculative-config",
                  '{"method": "ngram", "num_speculative_tokens": 3}', *WORKLOAD)
    assert done.exit_code == 0, (done.output, done.exception)
    assert json.loads(done.stdout)["results"][0]["output_tokens"] == 10
