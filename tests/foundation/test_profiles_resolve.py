"""Engine settings precedence: built-in defaults < profile < VDEPLOY_* environment < command-line flags."""

from __future__ import annotations

import pytest

from vdeploy.config import EngineConfig
from vdeploy.errors import ConfigError
from vdeploy.profiles import SETTINGS, get_profile, resolve_engine_config


def test_defaults_only():
    cfg, provenance = resolve_engine_config("/models/x", None, {}, {})
    assert cfg == EngineConfig(model="/models/x")
    assert set(provenance) == set(SETTINGS) and set(provenance.values()) == {"default"}


def test_profile_over_defaults():
    profile = get_profile("r1-distill-qwen-7b-1x24gb")
    cfg, provenance = resolve_engine_config("/m", profile, {}, {})
    assert cfg.scheduler.max_model_len == 16384 and cfg.cache.gpu_memory_utilization == 0.92
    assert cfg.scheduler.max_num_seqs == 32 and cfg.dtype == "bfloat16"
    assert provenance["max_model_len"] == "profile:r1-distill-qwen-7b-1x24gb"
    assert provenance["seed"] == "default"


def test_multi_node_and_cpu_profiles_set_deployment_fields():
    cfg, provenance = resolve_engine_config("/m", get_profile("deepseek-r1-2x8xh100"), {}, {})
    assert cfg.parallel.world_size == 16 and cfg.parallel.nnodes == 2
    assert provenance["nnodes"] == "profile:deepseek-r1-2x8xh100"
    cpu, _ = resolve_engine_config("/m", get_profile("demo-cpu"), {}, {})
    assert cpu.device == "cpu" and cpu.enforce_eager and cpu.dtype == "float32"


def test_environment_over_profile_and_flags_over_environment():
    profile = get_profile("r1-distill-qwen-7b-1x80gb")
    env = {"VDEPLOY_MAX_MODEL_LEN": "4096", "VDEPLOY_ENFORCE_EAGER": "yes", "VDEPLOY_MAX_NUM_SEQS": "12",
           "VDEPLOY_HOME": "/elsewhere", "VDEPLOY_DEVICE": ""}
    flags = {"max_num_seqs": 7, "max_model_len": None, "device": "cpu"}
    cfg, provenance = resolve_engine_config("/m", profile, env, flags)
    assert cfg.scheduler.max_model_len == 4096 and provenance["max_model_len"] == "env:VDEPLOY_MAX_MODEL_LEN"
    assert cfg.enforce_eager is True and provenance["enforce_eager"] == "env:VDEPLOY_ENFORCE_EAGER"
    assert cfg.scheduler.max_num_seqs == 7 and provenance["max_num_seqs"] == "flag"
    assert cfg.device == "cpu" and provenance["device"] == "flag"
    assert cfg.cache.block_size == 16 and provenance["block_size"] == "profile:r1-distill-qwen-7b-1x80gb"


@pytest.mark.parametrize(("env", "flags", "fragment"), [
    ({"VDEPLOY_TENSOR_PARALLEL_SIZE": "two"}, {}, "VDEPLOY_TENSOR_PARALLEL_SIZE"),
    ({"VDEPLOY_ENABLE_PREFIX_CACHING": "maybe"}, {}, "true/false"),
    ({}, {"max_model_length": 5}, "unknown engine setting"),
    ({}, {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"VDEPLOY_BLOCK_SIZE": "12"}, {}, "power of two"),
    ({}, {"tensor_parallel_size": 0}, "tensor_parallel_size"),
])
def test_bad_overrides_are_config_errors(env, flags, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_engine_config("/m", None, env, flags)
    assert fragment in err.value.message
