"""`quant_method: fp8` without `weight_block_size` is AutoFP8 / vLLM's per-tensor FP8 (a scalar weight_scale, plus an
input_scale with static activations), not DeepSeek's block FP8: it is refused when config.json is read, in one line
naming weight_block_size and activation_scheme and saying what vdeploy loads, rather than read as 128×128 blocks and
blamed on the download. inspect-shards reports the same finding and no download damage. Block FP8 with static
activation scales is refused naming activation_scheme. Checkpoints are packed by the tests (fp8_testlib)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.checkpoint.fp8_testlib import block_fp8_config, block_fp8_pack, per_tensor_fp8_pack, tiny_llama, \
    write_checkpoint
from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.cli.main import app
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.errors import ConfigError

SHAPE = dict(hidden=128, heads=4, kv_heads=2, head_dim=32, intermediate=256)


@pytest.fixture(scope="module", params=["static", "dynamic"])
def per_tensor(request, tmp_path_factory):
    static = request.param == "static"
    quant = {"quant_method": "fp8", "activation_scheme": request.param, "ignored_layers": ["lm_head"]}
    path = write_checkpoint(tiny_llama(**SHAPE), tmp_path_factory.mktemp(request.param) / "m", quant,
                            lambda w: per_tensor_fp8_pack(w, static))
    return request.param, path


def test_config_is_refused_naming_the_keys(per_tensor):
    scheme, path = per_tensor
    with pytest.raises(ConfigError) as refused:
        ModelConfig.from_path(path)
    message = refused.value.message
    assert "\n" not in message and "weight_block_size" in message and f'activation_scheme "{scheme}"' in message
    assert "compressed-tensors FP8 W8A8" in message  # what is loaded instead
    assert ("static input_scale" in message) == (scheme == "static")
    assert "re-download" not in (refused.value.hint or "") and "compressed-tensors" in refused.value.hint


def test_the_engine_refuses_before_loading(per_tensor):
    from vdeploy.engine.llm import LLM

    _, path = per_tensor
    with pytest.raises(ConfigError, match="without weight_block_size"):
        LLM(str(path), device="cpu", dtype="float32")


def test_inspect_shards_names_the_config_not_the_download(per_tensor):
    _, path = per_tensor
    report = inspect_checkpoint(path, gpu_memory_gb=[80])
    errors = [f for f in report.findings if f.severity == "error"]
    assert [f.kind for f in errors] == ["unsupported_config"]
    assert errors[0].file == "config.json" and "weight_block_size" in errors[0].message
    assert not any("re-download" in (f.hint or "") or f.kind.startswith("fp8_") for f in report.findings)
    result = CliRunner().invoke(app, ["inspect-shards", str(path), "--gpu-memory", "80"], terminal_width=400)
    assert result.exit_code == 1
    assert 'quant_method "fp8" without weight_block_size' in result.output
    assert "fp8_weight_without_scale" not in result.output and "unexpected_tensor" not in result.output


def test_block_fp8_with_static_activation_scales_is_refused_naming_the_key(tmp_path):
    quant = {**block_fp8_config((32, 32)), "activation_scheme": "static"}
    path = write_checkpoint(tiny_llama(**SHAPE), tmp_path / "m", quant, lambda w: block_fp8_pack(w, (32, 32)))
    with pytest.raises(ConfigError, match='activation_scheme "static": static activation scales'):
        ModelConfig.from_path(path)


def test_block_fp8_with_dynamic_activations_still_loads(tmp_path):
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model

    path = write_checkpoint(tiny_llama(**SHAPE), tmp_path / "m", block_fp8_config((32, 32)),
                            lambda w: block_fp8_pack(w, (32, 32)))
    cfg = ModelConfig.from_path(path)
    assert cfg.quant.weight_block_size == (32, 32)
    load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "float32", quiet=True)
