"""The free-space check of a resumed download counts only the bytes still to come: what an interrupted transfer left
in its partial file is already on the disk. Free space is the filesystem's answer (shutil.disk_usage) set to a
tight value; the transfers are real (the local hub through the real clients, or a directory copy)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from download_testlib import run_download, shard_names, write_tree

from vdeploy.download import DownloadRequest, download_model
from vdeploy.download.hf_source import partial_path
from vdeploy.download.manifest import PARTIAL_SUFFIX
from vdeploy.download.types import RemoteFile
from vdeploy.errors import DownloadError

MARGIN = 4096


def _partial_of(source: str, target: Path, name: str, data: bytes) -> Path:
    """Where each source's client keeps an interrupted transfer of `name` (and resumes it from)."""
    if source == "huggingface":
        return partial_path(target, RemoteFile(name, len(data), "sha256", hashlib.sha256(data).hexdigest()))
    if source == "modelscope":
        return target / f"{name}.incomplete"  # modelscope_hub's own partial file
    return target / f"{name}{PARTIAL_SUFFIX}"


def _limit_free_space(monkeypatch, free: int) -> None:
    real = shutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        return type(usage)(usage.total, usage.used, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def _interrupted(source, checkpoint_files, tmp_path) -> tuple[Path, int]:
    """A target holding the first 90% of each shard as its source's partial file; returns (target, bytes missing)."""
    target = tmp_path / "d"
    missing = 0
    for name in shard_names(checkpoint_files):
        data = checkpoint_files[name]
        partial = _partial_of(source, target, name, data)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data[: len(data) * 9 // 10])
        missing += len(data) - partial.stat().st_size
    missing += sum(len(d) for n, d in checkpoint_files.items() if n not in shard_names(checkpoint_files))
    return target, missing


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_resume_needs_only_the_missing_bytes(hub, checkpoint_files, tmp_path, monkeypatch, source):
    target, missing = _interrupted(source, checkpoint_files, tmp_path)
    _limit_free_space(monkeypatch, missing + MARGIN)
    result = run_download(source, hub.url, target)
    assert result.ok, result.to_dict()
    for name in shard_names(checkpoint_files):
        assert (target / name).read_bytes() == checkpoint_files[name]
        assert any(r.range for r in hub.file_gets(name)), hub.file_gets(name)  # continued, not restarted


def test_local_copy_resume_needs_only_the_missing_bytes(checkpoint_files, tmp_path, monkeypatch):
    source_dir = write_tree(tmp_path / "src" / "m", checkpoint_files)
    target, missing = _interrupted("local", checkpoint_files, tmp_path)
    _limit_free_space(monkeypatch, missing + MARGIN)
    result = download_model(DownloadRequest(str(source_dir), source="local", local_dir=target))
    assert result.ok, result.to_dict()


def test_still_refused_when_the_missing_bytes_do_not_fit(hub, checkpoint_files, tmp_path, monkeypatch):
    target, missing = _interrupted("huggingface", checkpoint_files, tmp_path)
    _limit_free_space(monkeypatch, missing - MARGIN)
    with pytest.raises(DownloadError, match="not enough disk space"):
        run_download("huggingface", hub.url, target)
