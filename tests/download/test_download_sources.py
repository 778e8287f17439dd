"""Full downloads through the real huggingface_hub and modelscope clients against our local hub."""

from __future__ import annotations

import json

import pytest
from download_testlib import MODEL_ID, run_download, shard_names

from vdeploy.download import DownloadRequest, download_model, resolve_local_model
from vdeploy.download.manifest import MANIFEST_NAME
from vdeploy.errors import VdeployError


def _assert_identical(directory, files):
    for name, data in files.items():
        assert (directory / name).read_bytes() == data, name


def test_huggingface_full_download_then_nothing_refetched(hub, checkpoint_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the endpoint setting passes through to the client
    target = tmp_path / "hf"
    result = download_model(DownloadRequest(MODEL_ID, source="huggingface", local_dir=target))
    assert result.ok, result.to_dict()
    assert result.commit == hub.repos[MODEL_ID].revisions["main"]
    _assert_identical(target, checkpoint_files)
    by_path = {f.path: f for f in result.files}
    assert all(f.status == "downloaded" for f in result.files)
    for shard in shard_names(checkpoint_files):
        assert by_path[shard].verified_against == "sha256"  # LFS oid, checked by us
    assert by_path["config.json"].verified_against == "git-sha1"
    assert result.checkpoint.ran and result.checkpoint.errors == []
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["complete"] and set(manifest["files"]) == set(checkpoint_files)

    assert {r.path for r in hub.requests if r.status == 302} == {"redirect:" + s for s in shard_names(checkpoint_files)}

    hub.requests.clear()
    again = download_model(DownloadRequest(MODEL_ID, source="huggingface", local_dir=target))
    assert again.ok and {f.status for f in again.files} == {"skipped"}
    assert hub.requests and all(r.path.startswith("/api/") for r in hub.requests)  # listing only, no file GET


def test_modelscope_default_location_and_resolve(hub, checkpoint_files, monkeypatch, isolated_env):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.url)
    result = download_model(DownloadRequest(MODEL_ID, source="modelscope"))
    assert result.ok, result.to_dict()
    expected_dir = isolated_env / "vdeploy-home" / "models" / "deepseek-ai" / "Tiny-Llama"
    assert result.local_dir == str(expected_dir)
    _assert_identical(expected_dir, checkpoint_files)
    assert {f.verified_against for f in result.files} == {"sha256"}  # ModelScope publishes Sha256 for every file
    assert resolve_local_model(MODEL_ID) == expected_dir.resolve()
    assert hub.file_gets("model.safetensors.index.json")


def test_modelscope_tag_revision(hub, checkpoint_files, tmp_path):
    result = run_download("modelscope", hub.url, tmp_path / "d", revision="v1.0")
    assert result.ok and result.revision == "v1.0"
    assert any("Revision=v1.0" in r.path for r in hub.requests)


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_include_exclude(hub, checkpoint_files, tmp_path, source):
    only_json = run_download(source, hub.url, tmp_path / "json", include=["*.json"])
    assert sorted(f.path for f in only_json.files) == sorted(n for n in checkpoint_files if n.endswith(".json"))
    assert not only_json.checkpoint.ran and "subset" in only_json.checkpoint.reason
    assert not list((tmp_path / "json").glob("*.safetensors"))

    no_docs = run_download(source, hub.url, tmp_path / "nodocs", exclude=["docs/*"])
    assert "docs/notes.md" not in {f.path for f in no_docs.files}
    assert no_docs.ok and no_docs.checkpoint.ran and not (tmp_path / "nodocs" / "docs").exists()


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_missing_shard_fails_checkpoint_checks(hub, checkpoint_files, tmp_path, source):
    second = shard_names(checkpoint_files)[1]
    result = run_download(source, hub.url, tmp_path / "d", exclude=[second])
    assert not result.ok
    assert result.checkpoint.ran and any(second in e for e in result.checkpoint.errors)


@pytest.mark.parametrize("source,model,revision,words", [
    ("huggingface", "deepseek-ai/No-Such-Model", None, "not found"),
    ("huggingface", MODEL_ID, "no-such-branch", "revision 'no-such-branch' not found"),
    ("modelscope", "deepseek-ai/No-Such-Model", None, "not found"),
    ("modelscope", MODEL_ID, "no-such-branch", "revision 'no-such-branch' not found"),
])
def test_unknown_repo_or_revision(hub, tmp_path, source, model, revision, words):
    with pytest.raises(VdeployError) as info:
        download_model(DownloadRequest(model, source=source, endpoint=hub.url, revision=revision,
                                       local_dir=tmp_path / "d"))
    assert words in info.value.message and info.value.exit_code == 2
    assert not (tmp_path / "d").exists()


def test_files_on_disk_without_manifest_are_hashed_not_refetched(hub, checkpoint_files, tmp_path):
    target = tmp_path / "d"
    assert run_download("huggingface", hub.url, target).ok
    (target / MANIFEST_NAME).unlink()  # as after a run killed between a rename and the manifest update
    shard, other = shard_names(checkpoint_files)
    data = bytearray((target / shard).read_bytes())
    data[-1] ^= 0x01  # same size, wrong content: must be fetched again
    (target / shard).write_bytes(bytes(data))
    (target / other).write_bytes(b"truncated")  # wrong size: fetched again without hashing
    hub.requests.clear()
    result = run_download("huggingface", hub.url, target)
    assert result.ok
    fetched = sorted(f.path for f in result.files if f.status == "downloaded")
    assert fetched == sorted([shard, other])
    assert {r.path for r in hub.requests if r.path in checkpoint_files} == {shard, other}
    _assert_identical(target, checkpoint_files)
