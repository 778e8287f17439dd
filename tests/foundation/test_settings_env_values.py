"""VDEPLOY_* values are read as the option and the --config file read the same setting (docs/profiles.md): a token
count takes vLLM's suffixes, a value out of bounds or not among the choices is an error that names the variable,
and no source lets a NaN through the bounds."""

from __future__ import annotations

import pytest

from vdeploy.config_file import load_config_file
from vdeploy.errors import ConfigError
from vdeploy.profiles import resolve_engine_config


def test_token_counts_in_the_environment_take_the_option_s_suffixes():
    env = {"VDEPLOY_MAX_MODEL_LEN": "32k", "VDEPLOY_MAX_NUM_BATCHED_TOKENS": "8K"}
    cfg, provenance = resolve_engine_config("/m", None, env, {})
    assert cfg.scheduler.max_model_len == 32_000 and cfg.scheduler.max_num_batched_tokens == 8192
    assert provenance["max_model_len"] == "env:VDEPLOY_MAX_MODEL_LEN"


@pytest.mark.parametrize(("variable", "value", "fragment"), [
    ("VDEPLOY_TENSOR_PARALLEL_SIZE", "0", "outside [1, ]"),
    ("VDEPLOY_GPU_MEMORY_UTILIZATION", "1.5", "outside [0.05, 1]"),
    ("VDEPLOY_DEVICE", "gpu", "not one of auto, cuda, cpu"),
    ("VDEPLOY_BLOCK_SIZE", "12", "power of two"),
])
def test_a_bad_environment_value_names_its_variable(variable, value, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_engine_config("/m", None, {variable: value}, {})
    assert variable in err.value.message and fragment in err.value.message, err.value.message
    assert "\n" not in err.value.message


def test_nan_is_refused_from_every_source(tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve_engine_config("/m", None, {"VDEPLOY_GPU_MEMORY_UTILIZATION": "nan"}, {})
    assert "VDEPLOY_GPU_MEMORY_UTILIZATION" in err.value.message
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        resolve_engine_config("/m", None, {}, {"gpu_memory_utilization": float("nan")})
    config = tmp_path / "engine.yaml"
    config.write_text("step-timeout: .nan\n")
    with pytest.raises(ConfigError, match="step-timeout"):
        load_config_file(config)
