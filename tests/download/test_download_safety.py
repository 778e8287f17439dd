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
