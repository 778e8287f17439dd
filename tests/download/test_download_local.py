"""--source local: copy (resumable) or link a checkpoint directory with the same verification; source choice;
finding a downloaded model by id."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from download_testlib import MODEL_ID, run_download, shard_names

from vdeploy.download import DownloadRequest, download_model, resolve_local_model
from vdeploy.download.manifest import MANIFEST_NAME, PARTIAL_SUFFIX
from vdeploy.download.source import choose_source
from vdeploy.errors import VdeployError


def _write_dir(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_copy_from_a_vdeploy_download_uses_its_hashes(hub, checkpoint_files, tmp_path):
    """The air-gapped flow: download on a connected machine, carry the directory over, copy it in."""
    carried = tmp_path / "usb" / "Tiny-Llama"
    assert run_download("modelscope", hub.url, carried).ok
    result = download_model(DownloadRequest(str(carried), source="local"))
    assert result.ok and result.model_id == MODEL_ID  # the id comes from the carried manifest
    assert {f.verified_against for f in result.files} == {"sha256"}
    assert resolve_local_model(MODEL_ID) == Path(result.local_dir).resolve()
    for name, data in checkpoint_files.items():
        assert (tmp_path / "vdeploy-home" / "models" / MODEL_ID / name).read_bytes() == data


def test_copy_detects_a_source_file_that_no_longer_matches_its_manifest(hub, checkpoint_files, tmp_path):
    carried = tmp_path / "nfs" / "m"
    assert run_download("huggingface", hub.url, carried).ok
    shard = shard_names(checkpoint_files)[0]
    data = bytearray((carried / shard).read_bytes())
    data[100] ^= 0xFF
    (carried / shard).write_bytes(bytes(data))
    result = download_model(DownloadRequest(str(carried), source="local", local_dir=tmp_path / "copy"))
    assert not result.ok
    assert [(f.path, f.status) for f in result.files if f.status != "downloaded"] == [(shard, "corrupt")]
    assert not (tmp_path / "copy" / shard).exists()


def test_plain_directory_copy_resumes_a_partial_file(checkpoint_files, tmp_path):
    source = _write_dir(tmp_path / "plain" / "my-model", checkpoint_files)
    target = tmp_path / "copy"
    shard = shard_names(checkpoint_files)[0]
    (target / shard).parent.mkdir(parents=True)
    (target / (shard + PARTIAL_SUFFIX)).write_bytes(checkpoint_files[shard][:4096])  # an interrupted copy
    result = download_model(DownloadRequest(str(source), source="local", local_dir=target))
    assert result.ok and result.model_id == "local/my-model"
    assert {f.verified_against for f in result.files} == {"copy-stream"}
    for name, data in checkpoint_files.items():
        assert (target / name).read_bytes() == data
    assert not list(target.rglob("*" + PARTIAL_SUFFIX))


def test_link_mode_hardlinks_on_the_same_filesystem(checkpoint_files, tmp_path):
    source = _write_dir(tmp_path / "src", checkpoint_files)
    target = tmp_path / "linked"
    result = download_model(DownloadRequest(str(source), source="local", local_dir=target, link=True))
    assert result.ok and result.checkpoint.ran
    for name in checkpoint_files:
        assert os.path.samefile(source / name, target / name)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["source"] == "local" and manifest["complete"]


def test_local_source_must_be_a_directory_and_not_the_target(tmp_path):
    with pytest.raises(VdeployError, match="not a directory"):
        download_model(DownloadRequest(str(tmp_path / "missing"), source="local"))
    (tmp_path / "config.json").write_text("{}")
    for target in (tmp_path, tmp_path / "copy"):
        with pytest.raises(VdeployError, match="the source directory itself"):
            download_model(DownloadRequest(str(tmp_path), source="local", local_dir=target))


@pytest.mark.parametrize("flag,env,expected", [
    (None, {}, "modelscope"),
    ("huggingface", {"VDEPLOY_SOURCE": "modelscope"}, "huggingface"),
    (None, {"VDEPLOY_SOURCE": "hf"}, "huggingface"),
    (None, {"VLLM_USE_MODELSCOPE": "true"}, "modelscope"),
    (None, {"VLLM_USE_MODELSCOPE": "False"}, "huggingface"),
    (None, {"VDEPLOY_SOURCE": "local", "VLLM_USE_MODELSCOPE": "true"}, "local"),
])
def test_choose_source(flag, env, expected):
    assert choose_source(flag, env) == expected


def test_choose_source_rejects_unknown():
    with pytest.raises(VdeployError, match="unknown source"):
        choose_source("s3", {})


def test_resolve_local_model(tmp_path, isolated_env):
    assert resolve_local_model(MODEL_ID) is None
    home = isolated_env / "vdeploy-home" / "models" / "deepseek-ai" / "Tiny-Llama"
    home.mkdir(parents=True)
    (home / "config.json").write_text("{}")
    assert resolve_local_model(MODEL_ID) == home.resolve()  # placed by hand, no manifest
    (home / MANIFEST_NAME).write_text(json.dumps({"complete": False}))
    assert resolve_local_model(MODEL_ID) is None  # an interrupted download is not a model
    assert resolve_local_model(str(tmp_path)) == tmp_path.resolve()
    assert resolve_local_model("not-an-id") is None


def test_hugging_face_cache_snapshot_is_checked_against_its_blob_names(checkpoint_files, tmp_path):
    import hashlib

    repo = tmp_path / "hf-cache" / "models--deepseek-ai--Tiny-Llama"
    snapshot = repo / "snapshots" / ("a" * 40)
    for name, data in checkpoint_files.items():
        blob_name = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else hashlib.sha1(data).hexdigest()
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "blobs" / blob_name).write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(repo / "blobs" / blob_name)
    shard = shard_names(checkpoint_files)[0]
    blob = (snapshot / shard).resolve()
    damaged = blob.read_bytes()
    blob.write_bytes(damaged[:-1] + bytes([damaged[-1] ^ 1]))  # a damaged blob in the cache

    result = download_model(DownloadRequest(str(snapshot), source="local"))
    assert result.model_id == MODEL_ID
    by_path = {f.path: f for f in result.files}
    assert by_path[shard_names(checkpoint_files)[1]].verified_against == "sha256"
    assert by_path["config.json"].verified_against == "copy-stream"
    assert by_path[shard].status == "corrupt" and not result.ok
