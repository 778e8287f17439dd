"""The LoRA flags of serve / generate / bench (vLLM's spellings) reach the engine config, from flags and from
VDEPLOY_* variables; `vdeploy generate --lora-modules … --lora NAME` answers with the adapter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vdeploy.errors import ConfigError
from vdeploy.lora.request import parse_lora_modules
from vdeploy.profiles import resolve_engine_config


def test_lora_modules_forms():
    assert parse_lora_modules(["a=/x", '{"name": "b", "path": "/y"}', ("c", "/z")]) == (
        ("a", "/x"), ("b", "/y"), ("c", "/z"))
    with pytest.raises(ConfigError, match="name=path"):
        parse_lora_modules(["just-a-path"])
    with pytest.raises(ConfigError, match="twice"):
        parse_lora_modules(["a=/x", "a=/y"])


def test_flags_and_environment_reach_the_engine_config():
    from vdeploy.cli.lora_options import lora_settings

    flags = lora_settings(False, ["sql=/adapters/sql"], 3, 32)
    config, provenance = resolve_engine_config("/m", None, {}, flags)
    assert config.lora.lora_modules == (("sql", "/adapters/sql"),) and config.lora.enabled
    assert (config.lora.max_loras, config.lora.max_lora_rank) == (3, 32) and provenance["max_loras"] == "flag"
    env = {"VDEPLOY_LORA_MODULES": "a=/p, b=/q", "VDEPLOY_MAX_LORA_RANK": "8"}
    config, _ = resolve_engine_config("/m", None, env, lora_settings(False, None, None, None))
    assert config.lora.lora_modules == (("a", "/p"), ("b", "/q")) and config.lora.max_lora_rank == 8
    config, _ = resolve_engine_config("/m", None, {}, lora_settings(False, None, None, None))
    assert not config.lora.enabled


@pytest.mark.timeout(120)
def test_generate_with_an_adapter(tmp_path):
    from typer.testing import CliRunner

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
    from server_harness import VOCAB_SIZE, write_test_tokenizer

    from vdeploy.cli.main import app
    from vdeploy.testing.lora_fixtures import write_peft_adapter, write_tiny_llama

    base = write_tiny_llama(tmp_path / "model", vocab_size=VOCAB_SIZE)
    write_test_tokenizer(tmp_path / "model")
    write_peft_adapter(base, tmp_path / "sql", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], seed=3,
                       std=0.4)
    common = [str(tmp_path / "model"), "--no-chat", "-p", "Hello world", "--max-tokens", "8", "--temperature", "0",
              "--device", "cpu", "--dtype", "float32", "--json"]
    runner = CliRunner()
    base_out = runner.invoke(app, ["generate", *common])
    lora_out = runner.invoke(app, ["generate", *common, "--lora-modules", f"sql={tmp_path / 'sql'}", "--lora", "sql"])
    assert base_out.exit_code == 0 and lora_out.exit_code == 0, (base_out.output, lora_out.output)
    assert json.loads(lora_out.stdout)["text"] != json.loads(base_out.stdout)["text"]
    wrong = runner.invoke(app, ["generate", *common, "--lora", "nope"])
    assert isinstance(wrong.exception, ConfigError) and "--lora-modules" in str(wrong.exception)
    bench = runner.invoke(app, ["bench", str(tmp_path / "model"), "--num-prompts", "6", "--input-len", "8",
                                "--output-len", "4", "--device", "cpu", "--dtype", "float32", "--json",
                                "--lora-modules", f"sql={tmp_path / 'sql'}", "--max-lora-rank", "4"])
    assert bench.exit_code == 0, bench.output
    result = json.loads(bench.stdout)["results"][0]
    assert result["num_requests"] == 6 and result["output_tokens"] == 24
    assert result["extra"]["lora_adapters"] == ["sql"]
