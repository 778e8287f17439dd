"""Safety: unsafe remote names refused, disk space checked before any byte, ids validated, one writer per dir."""

from __future__ import annotations

import pytest
from download_testlib import MODEL_ID, run_download

from vdeploy.download.manifest import DirectoryLock
from vdeploy.download.paths import safe_relative_path, validate_model_id
from vdeploy.errors import DownloadError, VdeployError


@pytest.mark.parametrize("name", ["../evil.bin", "a/../../evil.bin", "/etc/passwd", "C:/evil", "a\\..\\evil",
                                  "a//b", "./a", ""])
def test_unsafe_names_refused(name):
    with pytest.raises(DownloadError):
        safe_relative_path(name)


@pytest.mark.parametrize("name", ["config.json", "original/model.safetensors", "a..b/c...json"])
def test_safe_names_kept(name):
    assert safe_relative_path(name).as_posix() == name


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
@pytest.mark.parametrize("evil", ["../escape.json", "sub/../../escape.json"])
def test_hub_listing_with_traversal_refused_before_any_fetch(hub, tmp_path, source, evil):
    hub.repos[MODEL_ID].files[evil] = b'{"pwned": true}'
    target = tmp_path / "models" / "d"
    with pytest.raises(DownloadError) as info:
        run_download(source, hub.url, target)
    assert evil in info.value.message and "outside" in info.value.message
    assert not [r for r in hub.requests if r.path in hub.repos[MODEL_ID].files]  # no file was requested
    assert not target.exists() and not (tmp_path / "models" / "escape.json").exists()


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_not_enough_disk_is_a_clear_error_before_any_byte(hub, checkpoint_files, tmp_path, monkeypatch, source):
    from vdeploy.download import disk

    asked = []
    monkeypatch.setattr(disk, "free_bytes", lambda path: asked.append(path) or 1000)
    target = tmp_path / "d"
    with pytest.raises(DownloadError) as info:
        run_download(source, hub.url, target)
    message = info.value.message
    assert "not enough disk space" in message and "1.0 KB free" in message and info.value.exit_code == 1
    assert asked and not target.exists()
    assert not [r for r in hub.requests if r.path in checkpoint_files]


def test_disk_check_counts_only_missing_files(hub, checkpoint_files, tmp_path, monkeypatch):
    from vdeploy.download import disk

    target = tmp_path / "d"
    assert run_download("huggingface", hub.url, target).ok
    monkeypatch.setattr(disk, "free_bytes", lambda path: 0)
    assert run_download("huggingface", hub.url, target).ok  # nothing left to fetch, so no space needed


@pytest.mark.parametrize("bad", ["/abs/path", "./rel", "no-slash", "a/b/c", "../x/y", "org/..", "~/models/x"])
def test_model_id_must_be_org_name(bad):
    with pytest.raises(VdeployError) as info:
        validate_model_id(bad)
    assert info.value.exit_code == 2


def test_path_given_as_id_points_to_local_source(tmp_path):
    with pytest.raises(VdeployError) as info:
        validate_model_id(str(tmp_path))
    assert "--source local" in info.value.hint


def test_one_writer_per_directory(tmp_path):
    with DirectoryLock(tmp_path), pytest.raises(DownloadError, match="another vdeploy download"), \
            DirectoryLock(tmp_path):
        pass
    with DirectoryLock(tmp_path):  # released on exit
        pass


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_repo_files_named_like_our_bookkeeping_are_not_fetched(hub, checkpoint_files, tmp_path, source):
    """A repository uploaded from a directory vdeploy filled carries its manifest and lock (and a client's .cache/):
    fetched, they would overwrite our manifest (never verified twice, so re-fetched on every run) and the lock file
    the running download holds."""
    from vdeploy.download.manifest import LOCK_NAME, MANIFEST_NAME, load_manifest

    foreign = {MANIFEST_NAME: b'{"format": 1, "model_id": "someone/else"}', LOCK_NAME: b"",
               ".cache/modelscope/x.lock": b"", "model.safetensors.0123456789ab.vdeploy-partial": b"half"}
    hub.repos[MODEL_ID].files.update(foreign)
    target = tmp_path / "d"
    first = run_download(source, hub.url, target)
    assert first.ok, first.to_dict()
    assert not {f.path for f in first.files} & set(foreign)
    assert load_manifest(target).model_id == MODEL_ID and load_manifest(target).complete
    second = run_download(source, hub.url, target)
    assert second.ok and {f.status for f in second.files} == {"skipped"}, second.to_dict()
    assert not [r for r in hub.requests if r.path in foreign]


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_a_file_listed_twice_is_fetched_once(hub, checkpoint_files, tmp_path, source):
    """Two workers on one name would write the same partial file at once."""
    from download_testlib import shard_names

    shard = shard_names(checkpoint_files)[0]
    hub.listed_twice.add(shard)
    result = run_download(source, hub.url, tmp_path / "d")
    assert result.ok, result.to_dict()
    assert [f.path for f in result.files].count(shard) == 1
    assert (tmp_path / "d" / shard).read_bytes() == checkpoint_files[shard]
    assert len([r for r in hub.requests if r.method == "GET" and r.path == shard]) == 1


def test_a_file_listed_twice_with_different_contents_is_refused():
    from vdeploy.download.pipeline import _unique
    from vdeploy.download.types import RemoteFile

    with pytest.raises(DownloadError, match="twice with different contents"):
        _unique([RemoteFile("a.safetensors", 10, "sha256", "0" * 64),
                 RemoteFile("a.safetensors", 10, "sha256", "1" * 64)])
