"""The shipped profiles load and validate, their numbers agree with the memory planner, and every schema mistake
is an error naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from foundation_reference_configs import REFERENCE_CONFIGS

from vdeploy.config import ModelConfig
from vdeploy.errors import ConfigError
from vdeploy.profile_schema import builtin_profile_files
from vdeploy.profile_selection import model_mismatch
from vdeploy.profiles import get_profile, load_profile_file, load_profiles

REQUIRED = {
    "deepseek-r1-8xh200", "deepseek-r1-2x8xh100", "deepseek-v2-lite-1x80gb", "demo-cpu",
    "r1-distill-qwen-1.5b-1x24gb", "r1-distill-qwen-1.5b-1x80gb", "r1-distill-qwen-7b-1x24gb",
    "r1-distill-qwen-7b-1x80gb", "r1-distill-llama-8b-1x24gb", "r1-distill-llama-8b-1x80gb",
    "r1-distill-qwen-32b-1x80gb", "r1-distill-qwen-32b-2x80gb", "r1-distill-qwen-32b-4x80gb",
    "r1-distill-llama-70b-2x80gb", "r1-distill-llama-70b-4x80gb",
}

VALID = """\
name: {name}
description: test profile
match:
  architectures: [LlamaForCausalLM]
  max_params_b: 10
hardware:
  gpu_count: 2
  min_gpu_memory_gb: 24
engine:
  tensor_parallel_size: 2
  max_model_len: 4096
sampling:
  temperature: 0.6
"""


def write(tmp_path: Path, text: str, name: str = "custom") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(name=name))
    return path


def test_builtin_profiles_load_through_package_resources():
    files = builtin_profile_files()
    assert all(f.parent.name == "profiles" or f.parent.name == "profiles_data" for f in files)
    profiles = load_profiles(env={})
    assert REQUIRED <= {p.name for p in profiles}
    assert all(p.description and p.source.endswith(f"{p.name}.yaml") for p in profiles)


def test_r1_profiles_reflect_the_published_facts():
    h200 = get_profile("deepseek-r1-8xh200")
    assert (h200.engine.tensor_parallel_size, h200.engine.pipeline_parallel_size) == (8, 1)
    assert h200.match.quantization == ("fp8",) and h200.hardware.min_compute_capability == 9.0
    h100 = get_profile("deepseek-r1-2x8xh100")
    assert (h100.engine.tensor_parallel_size, h100.engine.pipeline_parallel_size, h100.hardware.nodes) == (8, 2, 2)
    assert get_profile("demo-cpu").is_cpu


def _plan_for(profile, cfg):
    from vdeploy.checkpoint.planner import plan_memory

    e = profile.engine
    return plan_memory(cfg, tp=e.tensor_parallel_size, pp=e.pipeline_parallel_size,
                       gpu_memory_bytes=int(profile.hardware.min_gpu_memory_gb * 1e9),
                       gpu_memory_utilization=e.gpu_memory_utilization, max_model_len=e.max_model_len,
                       fp8_tensor_cores=(profile.hardware.min_compute_capability or 0) >= 8.9)


def test_every_gpu_profile_fits_its_models_on_its_smallest_hardware():
    """The planner agrees with each profile's arithmetic: weights + KV for max_model_len fit the smallest GPU."""
    from vdeploy.checkpoint.planner import estimate_params

    configs = {name: ModelConfig.from_dict(raw) for name, raw in REFERENCE_CONFIGS.items()}
    for profile in load_profiles(env={}):
        targets = [c for c in configs.values()
                   if model_mismatch(profile, c, estimate_params(c).total / 1e9) is None]
        assert targets, f"{profile.name} matches none of the reference models"
        if profile.is_cpu:
            continue
        for cfg in targets:
            plan = _plan_for(profile, cfg)
            assert plan.verdict == "fits", f"{profile.name} / {cfg.architecture}: {plan.advice}"
            assert profile.sampling.max_tokens < profile.engine.max_model_len


@pytest.mark.parametrize(("text", "key", "suggestion"), [
    (VALID.replace("max_model_len", "max_model_length"), "engine.max_model_length", "max_model_len"),
    (VALID.replace("engine:", "engin:"), "engin", "engine"),
    (VALID.replace("  max_params_b: 10", "  max_params: 10"), "match.max_params", "max_params_b"),
    (VALID + "  top_k: 20\n", "sampling.top_k", None),
])
def test_unknown_key_names_file_and_key(tmp_path, text, key, suggestion):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_profile_file(path)
    assert str(path) in err.value.message and f"'{key}'" in err.value.message
    if suggestion:
        assert suggestion in err.value.hint


@pytest.mark.parametrize(("edit", "fragment"), [
    (("tensor_parallel_size: 2", "tensor_parallel_size: two"), "must be int"),
    (("max_model_len: 4096", "max_model_len: 32q"), "token count"),
    (("tensor_parallel_size: 2", "tensor_parallel_size: 4"), "TP 4 x PP 1"),
    (("max_model_len: 4096", "max_model_len: 4096\n  gpu_memory_utilization: 1.5"), "gpu_memory_utilization"),
    (("max_model_len: 4096", "max_model_len: 4096\n  block_size: 24"), "power of two"),
    (("max_model_len: 4096", "max_model_len: 4096\n  dtype: fp64"), "unknown dtype"),
    (("max_model_len: 4096", "max_model_len: 4096\n  enforce_eager: yes please"), "true or false"),
    (("[LlamaForCausalLM]", "[GPT2LMHeadModel]"), "unknown architecture"),
    (("  max_params_b: 10", "  max_params_b: 10\n  min_params_b: 20"), "larger than"),
    (("  max_params_b: 10", "  max_params_b: 10\n  quantization: [int4]"), "unknown value 'int4'"),
    (("description: test profile\n", ""), "'description' is required"),
    (("temperature: 0.6", "temperature: 0.6\n  max_tokens: 5000"), "max_tokens"),
    (("gpu_count: 2", "gpu_count: 0"), "CPU profile"),
])
def test_invalid_values(tmp_path, edit, fragment):
    path = write(tmp_path, VALID.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_profile_file(path)
    assert str(path) in err.value.message and fragment in err.value.message


def test_file_name_must_match_profile_name_and_yaml_must_parse(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(VALID.format(name="custom"))
    with pytest.raises(ConfigError, match="differs from the file name"):
        load_profile_file(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_profile_file(broken)


def test_user_profile_directory_adds_and_shadows(tmp_path):
    write(tmp_path, VALID, "custom")
    shadow = VALID.replace("description: test profile", "description: my own demo").replace(
        "gpu_count: 2", "gpu_count: 0").replace("tensor_parallel_size: 2", "tensor_parallel_size: 1")
    write(tmp_path, shadow, "demo-cpu")
    profiles = {p.name: p for p in load_profiles(env={"VDEPLOY_PROFILES_DIR": str(tmp_path)})}
    assert "custom" in profiles and "deepseek-r1-8xh200" in profiles
    assert profiles["demo-cpu"].description == "my own demo"
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(env={"VDEPLOY_PROFILES_DIR": str(tmp_path / "missing")})


def test_get_profile_by_path_and_unknown_name(tmp_path):
    path = write(tmp_path, VALID, "custom")
    assert get_profile(str(path)).name == "custom"
    with pytest.raises(ConfigError) as err:
        get_profile("deepseek-r1-8xh20")
    assert "deepseek-r1-8xh200" in err.value.hint


def test_show_json_round_trips_the_schema():
    from vdeploy.config import dataclass_to_dict

    data = dataclass_to_dict(get_profile("deepseek-r1-8xh200"))
    assert set(data) == {"name", "description", "match", "hardware", "engine", "sampling", "source"}
    json.dumps(data)


def test_fp8_kv_cache_is_accepted(tmp_path):
    path = write(tmp_path, VALID.replace("max_model_len: 4096", "max_model_len: 4096\n  kv_cache_dtype: fp8_e4m3"))
    assert load_profile_file(path).engine.kv_cache_dtype == "fp8_e4m3"
    bad = write(tmp_path, VALID.replace("max_model_len: 4096", "max_model_len: 4096\n  dtype: fp8_e4m3"), "bad")
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_profile_file(bad)


def test_token_counts_take_the_options_suffixes(tmp_path):
    # as --max-model-len, --config and VDEPLOY_MAX_MODEL_LEN take them
    path = write(tmp_path, VALID.replace("max_model_len: 4096", "max_model_len: 32K\n  max_num_batched_tokens: 8k"))
    engine = load_profile_file(path).engine
    assert (engine.max_model_len, engine.max_num_batched_tokens) == (32768, 8000)
