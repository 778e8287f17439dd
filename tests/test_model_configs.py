"""The bundled published configs: every one parses, and `--load-format dummy` turns a bundled name into a
weightless model directory (so real shapes can be served or benchmarked without a checkpoint)."""

import json

import pytest

from vdeploy.config import ModelConfig
from vdeploy.errors import ConfigError
from vdeploy.model_configs import available, config_path, resolve_dummy_model


def test_every_bundled_config_parses():
    families = {ModelConfig.from_path(config_path(name)).family for name in available()}
    assert {"llama", "qwen2", "deepseek_v2", "deepseek_v3"} <= families
    with pytest.raises(ConfigError):
        config_path("no-such-model")


def test_dummy_load_format_resolves_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    directory = resolve_dummy_model("deepseek-r1", "dummy")
    cfg = ModelConfig.from_path(directory)
    assert cfg.family == "deepseek_v3" and cfg.n_routed_experts == 256
    assert json.loads((tmp_path / "dummy" / "deepseek-r1" / "generation_config.json").read_text())["temperature"] == 0.6
    # anything else is left alone: real loads need a real directory, and paths win over names
    assert resolve_dummy_model("deepseek-r1", "safetensors") == "deepseek-r1"
    assert resolve_dummy_model(str(tmp_path), "dummy") == str(tmp_path)
    assert resolve_dummy_model(None, "dummy") is None
