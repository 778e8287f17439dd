"""Every corruption `inspect-shards` promises to catch, built on a real tiny checkpoint, with its finding asserted
(kind, severity, and the file and tensor it names)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vdeploy.testing import corruptions as damage
from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.safetensors_header import MAX_HEADER_BYTES
from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.errors import CheckpointError


@pytest.fixture
def fp8_ckpt(tmp_path):
    return write_tiny_checkpoint(tmp_path / "ds", "deepseek_v3", fp8=True, num_shards=3)


@pytest.fixture
def llama_ckpt(tmp_path):
    return write_tiny_checkpoint(tmp_path / "llama", "llama", num_shards=2)


def findings_of(root, kind):
    report = inspect_checkpoint(root, gpu_memory_gb=[24])
    return report, [f for f in report.findings if f.kind == kind]


def assert_finding(root, kind, where, severity="error"):
    report, found = findings_of(root, kind)
    assert found, f"no {kind} finding in {[(f.kind, f.message) for f in report.findings]}"
    f = found[0]
    assert f.severity == severity
    if where.file is not None:
        assert f.file == where.file
    if where.tensor is not None:
        assert f.tensor == where.tensor
    assert report.has_errors == (severity == "error" or any(x.severity == "error" for x in report.findings))
    return f


def test_missing_shard(fp8_ckpt):
    assert_finding(fp8_ckpt, "missing_shard", damage.delete_shard(fp8_ckpt))


def test_unlisted_file(fp8_ckpt):
    assert_finding(fp8_ckpt, "unlisted_file", damage.add_unlisted_shard(fp8_ckpt), severity="warning")


def test_index_places_tensor_in_a_shard_whose_header_lacks_it(llama_ckpt):
    where = damage.misplace_in_index(llama_ckpt)
    assert_finding(llama_ckpt, "tensor_missing_from_shard", where)
    # and the reverse: the shard that really holds it is not where the index says
    _, found = findings_of(llama_ckpt, "index_header_mismatch")
    assert found and found[0].tensor == where.tensor


def test_tensor_in_header_but_not_in_index(llama_ckpt):
    index = damage.read_index(llama_ckpt)
    tensor, file = next(iter(index["weight_map"].items()))
    del index["weight_map"][tensor]
    damage.write_index(llama_ckpt, index)
    assert_finding(llama_ckpt, "tensor_not_in_index", damage.Damage(file, tensor))


def test_duplicate_tensor(llama_ckpt):
    assert_finding(llama_ckpt, "duplicate_tensor", damage.duplicate_tensor(llama_ckpt))


def test_absurd_header_length(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[0]
    f = assert_finding(llama_ckpt, "absurd_header_length", damage.set_header_length(shard, MAX_HEADER_BYTES + 1))
    assert "absurd" in f.message


def test_header_length_past_end_of_file(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[0]
    where = damage.set_header_length(shard, shard.stat().st_size)
    assert "past the end" in assert_finding(llama_ckpt, "absurd_header_length", where).message


def test_invalid_header_json(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[1]
    assert_finding(llama_ckpt, "bad_header", damage.garble_header_json(shard))


def test_truncated_download(fp8_ckpt):
    shard = fp8_ckpt / damage.shard_files(fp8_ckpt)[0]
    f = assert_finding(fp8_ckpt, "data_past_eof", damage.truncate_shard(shard, 100))
    assert "truncated" in f.message


def test_overlapping_offsets(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[0]
    assert_finding(llama_ckpt, "offsets_overlap", damage.overlap_offsets(shard))


def test_offsets_out_of_order(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[0]
    assert_finding(llama_ckpt, "offsets_out_of_order", damage.invert_offsets(shard))


def test_unsupported_dtype(llama_ckpt):
    shard = llama_ckpt / damage.shard_files(llama_ckpt)[0]
    assert_finding(llama_ckpt, "unsupported_dtype", damage.set_dtype(shard, "C64"))


def test_shape_contradicts_hidden_size(llama_ckpt):
    # same bytes, but a hidden size of 32 instead of the config's 64
    where = damage.reshape_tensor(llama_ckpt, "model.embed_tokens.weight", [512, 32])
    f = assert_finding(llama_ckpt, "shape_mismatch", where)
    assert "[512, 32]" in f.message and "[256, 64]" in f.message


def test_fp8_weight_without_scale(fp8_ckpt):
    assert_finding(fp8_ckpt, "fp8_weight_without_scale", damage.drop_scale(fp8_ckpt))


def test_scale_of_wrong_block_shape(tmp_path):
    root = write_tiny_checkpoint(tmp_path / "ds", "deepseek_v3", fp8=True,
                                 config_overrides={"hidden_size": 256, "intermediate_size": 384})
    scale = "model.layers.0.mlp.up_proj.weight_scale_inv"  # weight [384, 256]: scale [3, 2]
    f = assert_finding(root, "scale_block_shape", damage.reshape_tensor(root, scale, [6, 1]))
    assert "expected [3, 2]" in f.message


def test_fp8_weights_without_quantization_config(fp8_ckpt):
    import json

    config = json.loads((fp8_ckpt / "config.json").read_text())
    del config["quantization_config"]
    (fp8_ckpt / "config.json").write_text(json.dumps(config))
    _, found = findings_of(fp8_ckpt, "fp8_without_quant_config")
    assert found and found[0].severity == "error" and found[0].tensor.endswith(".weight")


def test_model_max_length_below_max_position_embeddings(llama_ckpt):
    where = damage.write_tokenizer_config(llama_ckpt, model_max_length=128)
    f = assert_finding(llama_ckpt, "model_max_length", where, severity="warning")
    assert "128" in f.message and "512" in f.message


def test_vocab_smaller_than_tokenizer(llama_ckpt):
    damage.write_tokenizer_config(llama_ckpt, highest_token_id=300)  # model vocab is 256
    report, found = findings_of(llama_ckpt, "vocab_smaller_than_tokenizer")
    assert found and found[0].severity == "error" and "300" in found[0].message
    assert report.architecture.tokenizer_vocab_size == 301


@pytest.mark.parametrize("kind", ["bin", "gguf"])
def test_foreign_weights_next_to_safetensors(llama_ckpt, kind):
    f = assert_finding(llama_ckpt, "foreign_weights", damage.add_foreign_weights(llama_ckpt, kind), severity="warning")
    assert f.hint


@pytest.mark.parametrize("kind, advice", [("bin", "save_pretrained"), ("gguf", "original safetensors")])
def test_foreign_weights_only_is_unusable(tmp_path, kind, advice):
    root = tmp_path / "only"
    root.mkdir()
    damage.add_foreign_weights(root, kind)
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(root)
    assert err.value.exit_code == 2 and advice in err.value.hint


def test_missing_config_is_an_error_but_storage_is_still_reported(llama_ckpt):
    (llama_ckpt / "config.json").unlink()
    report, found = findings_of(llama_ckpt, "no_config")
    assert found and report.storage.shard_count == 2 and report.parameters.total > 0 and report.plans == []


def test_findings_of_one_kind_are_capped(tmp_path):
    import json

    root = write_tiny_checkpoint(tmp_path / "ds", "deepseek_v3")
    config = json.loads((root / "config.json").read_text())
    config["num_hidden_layers"] = 2  # the weights have 3 layers: layer 2 looks like an unknown MTP-less extra
    config["num_nextn_predict_layers"] = 0
    (root / "config.json").write_text(json.dumps(config))
    _, found = findings_of(root, "unexpected_tensor")
    assert 20 < len(found) <= 21 and found[-1].message.startswith("…")


def test_cli_exit_code_1_on_integrity_errors(fp8_ckpt):
    damage.delete_shard(fp8_ckpt)
    result = subprocess.run([sys.executable, "-m", "vdeploy", "inspect-shards", str(fp8_ckpt), "--gpu-memory", "24"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "missing_shard" in result.stdout and "integrity error" in result.stdout


def test_training_leftovers_are_not_foreign_weights(llama_ckpt):
    (llama_ckpt / "training_args.bin").write_bytes(b"PK\x03\x04")
    _, found = findings_of(llama_ckpt, "foreign_weights")
    assert found == []
