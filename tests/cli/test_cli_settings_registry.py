"""One registry of engine settings (issue 16): the options of serve / generate / bench, the profile schema, the
precedence resolver, `--config FILE.yaml` and `--explain` all derive from vdeploy.engine_settings, so a setting is
spelled once. `--config` follows vLLM's precedence (options > file > profile > defaults; VDEPLOY_* between
options and file)."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from cli_testlib import vdeploy

from vdeploy.engine_settings import SETTINGS, profile_settings, setting


def test_profile_schema_and_resolver_come_from_the_registry():
    from vdeploy.config import EngineConfig
    from vdeploy.profile_schema import EngineSettings
    from vdeploy.profiles import PROFILE_SETTINGS
    from vdeploy.profiles import SETTINGS as RESOLVED

    assert [f.name for f in fields(EngineSettings)] == [s.name for s in profile_settings()] == list(PROFILE_SETTINGS)
    assert list(RESOLVED) == [s.name for s in SETTINGS]
    config = EngineConfig(model="m")
    for s in SETTINGS:  # every path names a real field
        value = config
        for part in s.path.split("."):
            value = getattr(value, part)


@pytest.mark.parametrize("command", ["serve", "generate", "bench"])
def test_engine_options_of_every_command_are_the_registry_s(command):
    import typer

    from vdeploy.cli.main import app

    click_command = typer.main.get_command(app).commands[command]
    spellings = {flag: s for s in SETTINGS for flag in s.flags}
    seen = set()
    for param in click_command.params:
        hits = {spellings[o] for o in param.opts if o in spellings}
        if not hits:
            continue
        (s,) = hits
        seen.add(s.name)
        assert tuple(param.opts) == s.flags, (command, param.opts)
        assert param.help.startswith(s.help), (command, s.name)
        if s.kind is bool:
            assert param.secondary_opts == ["--no-" + s.option[2:]]
    # the settings the three commands share are the registry's, in all three
    assert {"tensor_parallel_size", "pipeline_parallel_size", "dtype", "max_model_len", "load_format"} <= seen


def _tiny_model(tmp_path):
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path / "tiny", "llama", dtype="float32", num_shards=1)


def _explained(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 4 and parts[0] in {s.name for s in SETTINGS}:
            rows[parts[0]] = (parts[2], parts[3])
    return rows


def test_config_file_precedence_and_explain(tmp_path):
    model = _tiny_model(tmp_path)
    config = tmp_path / "vllm.yaml"
    config.write_text("max-model-len: 0.25k\nmax_num_seqs: 3\nblock-size: 32\ntp: 1\n"
                      "gpu-memory-utilization: 0.5\n")
    done = vdeploy("serve", str(model), "--config", str(config), "--block-size", "16", "--explain", home=tmp_path,
                   env={"VDEPLOY_MAX_NUM_SEQS": "5", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    rows = _explained(done.stdout + done.stderr)
    assert rows["max_model_len"] == ("250", f"file:{config}")  # a size suffix in the file
    assert rows["max_num_seqs"] == ("5", "env:VDEPLOY_MAX_NUM_SEQS")  # environment over the file
    assert rows["block_size"] == ("16", "flag")  # the option over the file
    assert rows["dtype"][1].startswith("profile:")  # the file does not say: the profile's
    assert rows["seed"] == ("0", "default")
    # the file's setting that does nothing here is named, as the option would be
    assert "--gpu-memory-utilization has no effect" in done.stderr
    assert "loading" not in done.stdout + done.stderr  # --explain stops before the model loads


@pytest.mark.parametrize("text, message", [
    ("max-model-len: 32q\n", "not a token count"),
    ("tensor-paralel-size: 2\n", "did you mean 'tensor-parallel-size'"),
    ("port: 8000\n", "server options such as --port go on the command line"),
    ("enforce-eager: 1\n", "must be true or false"),
    ("dtype: fp64\n", "not one of auto, bfloat16"),
    ("- 1\n", "expected a mapping"),
])
def test_config_file_errors_name_the_key(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    done = vdeploy("serve", "/nonexistent", "--config", str(config), "--explain", home=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_every_cpu_no_effect_setting_warns_on_cpu():
    from vdeploy.engine_settings import no_effect_warnings

    noop = [s for s in SETTINGS if s.cpu_no_effect]
    assert {s.name for s in noop} >= {"gpu_memory_utilization", "enforce_eager"}
    warnings = no_effect_warnings({s.name: True for s in noop}, cpu_only=True)
    assert [w.split(" ", 1)[0] for w in warnings] == [s.option for s in noop]
    assert setting("max_model_len").size


def test_one_dtype_table_behind_every_dtype_map():
    import torch

    from vdeploy.checkpoint.layout import HF_DTYPES
    from vdeploy.cli.inspect import KV_DTYPE_BYTES
    from vdeploy.config import DTYPE_BYTES
    from vdeploy.dtypes import TABLE, lookup
    from vdeploy.engine_settings import DTYPE_CHOICES, KV_CACHE_DTYPE_CHOICES
    from vdeploy.models.loader import DTYPES
    from vdeploy.profile_schema import KV_CACHE_DTYPES
    from vdeploy.worker.device import TORCH_DTYPES

    assert DTYPE_CHOICES == ("auto", "bfloat16", "float16", "float32")
    assert KV_CACHE_DTYPES == KV_CACHE_DTYPE_CHOICES == (*DTYPE_CHOICES, "fp8_e4m3", "fp8")
    for d in TABLE:
        for spelling in d.spellings:
            assert lookup(spelling.upper()) is d
            assert DTYPE_BYTES[spelling] == KV_DTYPE_BYTES[spelling] == torch.empty(0, dtype=TORCH_DTYPES[spelling]
                                                                                    ).element_size() == d.bytes
    assert DTYPES["bf16"] is torch.bfloat16 and "fp8" not in DTYPES  # the loader casts to activation dtypes only
    assert HF_DTYPES == {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
