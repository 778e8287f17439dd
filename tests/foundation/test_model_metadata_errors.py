"""A model directory's metadata files (config.json, generation_config.json, the index, the tokenizer files) are read
only from inside the directory, a malformed config.json is one `error:` line in every command, and the GPU-memory
options take only a finite, positive size."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from foundation_fakes import cuda_software, h100_box, host

from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.synthetic import tiny_config, write_tiny_checkpoint
from vdeploy.config import ModelConfig
from vdeploy.errors import CheckpointError, ConfigError, VdeployError

REFERENCE_DIRS = [Path(__file__).resolve().parents[2] / "vdeploy" / "model_configs",
                  Path(__file__).resolve().parents[3] / "shared" / "reference" / "configs"]
SHA256 = "3f" * 32


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = write_tiny_checkpoint(tmp_path_factory.mktemp("pristine") / "m", "llama")
    _write_tokenizer(root)
    return root


@pytest.fixture
def model(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "m", symlinks=True))


def _write_tokenizer(root: Path) -> None:
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"eos_token": "a", "chat_template": "{{ messages }}"}))


def _link_outside(root: Path, name: str, target_name: str | None = None) -> Path:
    """Move `name` out of the directory (under another name unless given) and leave a symlink to it."""
    outside = root.parent / "elsewhere" / (target_name or f"stolen-{name}")
    outside.parent.mkdir(exist_ok=True)
    shutil.move(root / name, outside)
    (root / name).symlink_to(outside)
    return outside


def _write_config(root: Path, doc) -> None:
    (root / "config.json").write_text(json.dumps(doc))


def vdeploy(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real console entry point (known errors become `error: ...` there) on fake probes."""
    from vdeploy.cli.main import run
    from vdeploy.env import hardware, software
    from vdeploy.env import host as host_module

    monkeypatch.setattr(hardware, "detect_hardware", lambda: h100_box(1))
    monkeypatch.setattr(software, "detect_software", lambda: cuda_software())
    monkeypatch.setattr(host_module, "detect_host", lambda env=None: host())
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("VDEPLOY_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["vdeploy", *args])
    with pytest.raises(SystemExit) as done:
        run()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return done.value.code or 0, out, err


def _findings(report, kind: str) -> list:
    return [f for f in report.findings if f.kind == kind]


# ---- A: never read a metadata file outside the model directory ------------------------------------------------------

@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"])
def test_inspect_refuses_metadata_linked_outside(model, name):
    _link_outside(model, name)
    report = inspect_checkpoint(model, gpu_memory_gb=[24])
    refused = _findings(report, "path_outside_model_dir")
    assert [f.file for f in refused] == [name] and "outside the model directory" in refused[0].message
    assert name not in report.files_read and report.has_errors


def test_inspect_refuses_index_linked_outside(model):
    _link_outside(model, "model.safetensors.index.json")
    report = inspect_checkpoint(model, gpu_memory_gb=[24])
    assert [f.file for f in _findings(report, "path_outside_model_dir")] == ["model.safetensors.index.json"]


def test_inspect_shards_cli_names_the_refused_file(model, monkeypatch, capsys):
    outside = _link_outside(model, "config.json")
    code, out, _ = vdeploy(monkeypatch, capsys, "inspect-shards", str(model), "--gpu-memory", "24")
    assert code == 1 and "config.json" in out and "outside the model directory" in out and str(outside) in out


@pytest.mark.parametrize("spelling", ["dir", "file"])
def test_model_config_refuses_config_linked_outside(model, spelling):
    _link_outside(model, "config.json")
    with pytest.raises(CheckpointError, match="config.json resolves to .*outside the model directory"):
        ModelConfig.from_path(model if spelling == "dir" else model / "config.json")


@pytest.mark.parametrize("command", [["env", "check", "--model"], ["show"], ["profiles", "match"]])
def test_config_reading_commands_refuse_config_linked_outside(model, monkeypatch, capsys, command):
    _link_outside(model, "config.json")
    code, _, err = vdeploy(monkeypatch, capsys, *command, str(model))
    assert code == 2 and err.startswith("error: ") and "config.json resolves to" in err


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                  "chat_template.json"])
def test_tokenizer_refuses_files_linked_outside(model, name):
    from vdeploy.engine.tokenizer import Tokenizer

    (model / "chat_template.jinja").write_text("{{ messages }}")
    (model / "chat_template.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    Tokenizer.from_dir(model)  # all inside: fine
    if name == "chat_template.json":  # read only without a chat_template.jinja, which wins
        (model / "chat_template.jinja").unlink()
    _link_outside(model, name)
    with pytest.raises(CheckpointError, match=f"{name} resolves to .*outside the model directory"):
        Tokenizer.from_dir(model)


def test_links_into_a_hub_cache_or_to_a_same_named_file_are_still_read(model):
    """The shard rule's exceptions: the Hugging Face cache's blobs/ and `vdeploy download --link`."""
    from vdeploy.engine.tokenizer import Tokenizer

    _link_outside(model, "config.json", target_name="config.json")
    blobs = model.parent / "hub" / "blobs"
    blobs.mkdir(parents=True)
    shutil.move(model / "tokenizer.json", blobs / SHA256)
    (model / "tokenizer.json").symlink_to(blobs / SHA256)
    report = inspect_checkpoint(model, gpu_memory_gb=[24])
    assert not _findings(report, "path_outside_model_dir") and not report.has_errors
    assert {"config.json", "tokenizer.json"} <= set(report.files_read)
    assert ModelConfig.from_path(model).num_heads == 4
    assert Tokenizer.from_dir(model).token_to_id("a") == 1


def test_config_json_that_is_a_directory(model):
    (model / "config.json").unlink()
    (model / "config.json").mkdir()
    with pytest.raises(CheckpointError, match="config.json is not a regular file"):
        ModelConfig.from_path(model)
    assert [f.file for f in _findings(inspect_checkpoint(model, gpu_memory_gb=[24]), "not_a_regular_file")] == [
        "config.json"]


# ---- B: a malformed config.json is one error naming the key ---------------------------------------------------------

MALFORMED = [
    ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer, got 0"),
    ({"num_attention_heads": None}, "num_attention_heads must be a positive integer, got null"),
    ({"num_attention_heads": "four"}, 'num_attention_heads must be a positive integer, got "four"'),
    ({"num_attention_heads": True}, "num_attention_heads must be a positive integer, got true"),
    ({"hidden_size": -64}, "hidden_size must be a positive integer, got -64"),
    ({"vocab_size": 255.5}, "vocab_size must be a positive integer, got 255.5"),
    ({"max_position_embeddings": "lots"}, 'max_position_embeddings must be a positive integer, got "lots"'),
    ({"num_key_value_heads": 3}, "num_attention_heads (4) must be a multiple of num_key_value_heads (3)"),
    ({"head_dim": 0}, "head_dim must be a positive integer, got 0"),
    ({"hidden_size": 2}, "head_dim is missing"),  # fewer hidden units than heads: head_dim must be given
    ({"rms_norm_eps": "tiny"}, 'rms_norm_eps must be a positive number, got "tiny"'),
    ({"rope_theta": -1}, "rope_theta must be a positive number, got -1"),
    ({"quantization_config": "fp8"}, 'quantization_config must be a JSON object, got "fp8"'),
    ({"quantization_config": {"quant_method": "fp8", "weight_block_size": 128}},
     "quantization_config.weight_block_size must be two positive integers, got 128"),
    ({"rope_scaling": "linear"}, 'rope_scaling must be a JSON object, got "linear"'),
    ({"rope_parameters": [1]}, "rope_parameters must be a JSON object, got [1]"),
    ({"eos_token_id": "</s>"}, 'eos_token_id must be a token id or a list of token ids, got "</s>"'),
    ({"bos_token_id": [1]}, "bos_token_id must be a token id, got [1]"),
    ({"architectures": "LlamaForCausalLM"}, 'architectures must be a list of class names, got "LlamaForCausalLM"'),
    ({"architectures": [{"a": 1}]}, "architectures must be a list of class names"),
]
MALFORMED_DEEPSEEK = [
    ({"n_routed_experts": -1}, "n_routed_experts must be a non-negative integer, got -1"),
    ({"q_lora_rank": "big"}, 'q_lora_rank must be a positive integer, got "big"'),
    ({"routed_scaling_factor": "x"}, 'routed_scaling_factor must be a positive number, got "x"'),
    ({"n_group": 0}, "n_group must be a positive integer, got 0"),
]


@pytest.mark.parametrize(("family", "overrides", "message"), [("llama", o, m) for o, m in MALFORMED]
                         + [("deepseek_v3", o, m) for o, m in MALFORMED_DEEPSEEK])
def test_malformed_config_is_one_config_error(family, overrides, message):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(tiny_config(family, overrides=overrides))
    assert err.value.message.startswith("config.json: ") and message in err.value.message


def test_missing_required_key():
    cfg = tiny_config("llama")
    del cfg["num_hidden_layers"]
    with pytest.raises(ConfigError, match="config.json: num_hidden_layers is missing"):
        ModelConfig.from_dict(cfg)


@pytest.mark.parametrize("doc", [[1, 2], None, "llama", 3])
def test_config_that_is_not_an_object(doc, tmp_path):
    with pytest.raises(ConfigError, match="config.json: not a JSON object"):
        ModelConfig.from_dict(doc)
    _write_config(tmp_path, doc)
    with pytest.raises(VdeployError, match="config.json: not a JSON object"):
        ModelConfig.from_path(tmp_path)


def test_config_that_is_not_text(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(VdeployError, match="config.json: not UTF-8 JSON"):
        ModelConfig.from_path(tmp_path)


def test_a_shard_given_as_the_model(model):
    shard = next(model.glob("*.safetensors"))
    with pytest.raises(VdeployError, match=shard.name):
        ModelConfig.from_path(shard)


def test_missing_config_still_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no config.json in"):
        ModelConfig.from_path(tmp_path)


@pytest.mark.parametrize("command", [["env", "check", "--model"], ["show"], ["profiles", "match"],
                                     ["generate", "--prompt", "hi", "--max-tokens", "1", "--device", "cpu"]])
def test_every_command_prints_the_one_line(model, monkeypatch, capsys, command):
    _write_config(model, tiny_config("llama", overrides={"num_attention_heads": 0}))
    args = [*command, str(model)] if command[0] != "generate" else [command[0], str(model), *command[1:]]
    code, _, err = vdeploy(monkeypatch, capsys, *args)
    assert code == 2 and err.splitlines()[0].startswith("error: ")
    assert "num_attention_heads must be a positive integer, got 0" in err


def test_inspect_shards_reports_the_bad_key(model, monkeypatch, capsys):
    _write_config(model, tiny_config("llama", overrides={"num_key_value_heads": 3}))
    code, out, _ = vdeploy(monkeypatch, capsys, "inspect-shards", str(model), "--gpu-memory", "24")
    assert code == 1 and "must be a multiple of num_key_value_heads (3)" in out


@pytest.mark.parametrize("doc", [[1], None, {"architectures": ["LlamaForCausalLM"], "num_attention_heads": "x"}])
def test_inspect_checkpoint_reports_malformed_config(model, doc):
    _write_config(model, doc)
    report = inspect_checkpoint(model, gpu_memory_gb=[24])
    assert report.has_errors and any(f.file == "config.json" for f in report.findings if f.severity == "error")


def test_every_published_config_still_loads():
    files = [f for d in REFERENCE_DIRS if d.is_dir() for f in sorted(d.glob("*.config.json"))]
    assert len(files) >= 8
    for file in files:
        cfg = ModelConfig.from_path(file)
        assert cfg.num_heads % cfg.num_kv_heads == 0 and cfg.head_dim > 0, file
    for family in ("llama", "qwen2", "deepseek_v2", "deepseek_v3"):
        ModelConfig.from_dict(tiny_config(family))
        ModelConfig.from_dict(tiny_config(family, fp8=True))


# ---- C: GPU-memory options take a finite, positive size --------------------------------------------------------------

BAD_SIZES = ["inf", "nan", "-5", "0", "1e300", "lots"]


@pytest.mark.parametrize("size", BAD_SIZES)
def test_inspect_shards_gpu_memory_is_bounded(model, monkeypatch, capsys, size):
    code, _, err = vdeploy(monkeypatch, capsys, "inspect-shards", str(model), "--gpu-memory", size)
    assert code == 2 and "--gpu-memory" in err


@pytest.mark.parametrize("size", BAD_SIZES)
def test_profiles_match_gpu_memory_is_bounded(monkeypatch, capsys, size):
    code, _, err = vdeploy(monkeypatch, capsys, "profiles", "match", "deepseek-r1", "--gpus", "8",
                           "--gpu-memory-gb", size)
    assert code == 2 and "--gpu-memory-gb" in err


@pytest.mark.parametrize("size", BAD_SIZES)
def test_env_check_gpu_memory_is_bounded(monkeypatch, capsys, size):
    code, _, err = vdeploy(monkeypatch, capsys, "env", "check", "--model", "deepseek-r1", "--gpu-memory", size)
    assert code == 2 and "--gpu-memory" in err  # a usage error, as the other two commands


@pytest.mark.parametrize("size", [float("inf"), float("nan"), -5.0, 0.0, 1e300])
def test_planning_functions_refuse_impossible_gpu_sizes(size, model):
    from vdeploy.env.fit import check_model_fit
    from vdeploy.env.hardware import manual_hardware

    with pytest.raises(VdeployError, match="GPU memory"):
        check_model_fit(str(model), h100_box(1), host(), tp=1, gpu_memory_gb=size)
    with pytest.raises(VdeployError, match="GPU memory"):
        manual_hardware(8, size)
    with pytest.raises(VdeployError, match="GPU memory"):
        inspect_checkpoint(model, gpu_memory_gb=[size])


def test_gpu_memory_within_bounds_still_plans(model, monkeypatch, capsys):
    code, out, _ = vdeploy(monkeypatch, capsys, "inspect-shards", str(model), "--gpu-memory", "1", "--json")
    assert code == 0 and json.loads(out)["plans"][0]["gpu_memory_bytes"] == 10**9
    code, out, _ = vdeploy(monkeypatch, capsys, "profiles", "match", "deepseek-r1", "--gpus", "8",
                           "--gpu-memory-gb", "141", "--json")
    assert code == 0 and json.loads(out)["hardware"]["min_gpu_memory_gb"] == 141.0
