"""--source local and symlinks: nothing outside the source directory is read. File links are followed only where the
checkpoint loader's rule allows (checkpoint/paths.py: inside the directory, a hub cache blob, a file of the same
name); directory links are not descended; any other link stops the download with one error line before a byte is
copied."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from download_testlib import shard_names, write_tree
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.download import DownloadRequest, download_model
from vdeploy.download.progress import ProgressDisplay
from vdeploy.errors import DownloadError

SECRET = b"root:x:0:0:not for the copy\n"


@pytest.fixture
def source(checkpoint_files, tmp_path) -> Path:
    return write_tree(tmp_path / "src", checkpoint_files)


@pytest.fixture
def outside_file(tmp_path) -> Path:
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


def _link_outside(src: Path, outside: Path) -> tuple[str, str]:
    os.symlink(outside, src / "notes.txt")
    return "notes.txt", "outside"


def _shard_moved_outside(src: Path, outside: Path) -> tuple[str, str]:
    """As corruption_battery's `symlink_outside`: the shard's bytes live next to the directory, under another name."""
    shard = sorted(p.name for p in src.glob("*.safetensors"))[0]
    moved = src.parent / "secret.bin"
    os.replace(src / shard, moved)
    os.symlink(moved, src / shard)
    return shard, "outside"


def _dangling(src: Path, outside: Path) -> tuple[str, str]:
    os.symlink("/nonexistent/x.json", src / "x.json")
    return "x.json", "dangling"


def _loop(src: Path, outside: Path) -> tuple[str, str]:
    os.symlink("b.json", src / "a.json")
    os.symlink("a.json", src / "b.json")
    return "a.json", "loop"


def _nested_link_outside(src: Path, outside: Path) -> tuple[str, str]:
    os.symlink(outside, src / "docs" / "readme.md")
    return "docs/readme.md", "outside"


def _fifo(src: Path, outside: Path) -> tuple[str, str]:
    os.mkfifo(src / "pipe.bin")  # reading it would block the copy forever
    return "pipe.bin", "not a regular file"


REFUSED = [_link_outside, _shard_moved_outside, _dangling, _loop, _nested_link_outside, _fifo]


@pytest.mark.parametrize("make_link", REFUSED, ids=lambda f: f.__name__.lstrip("_"))
def test_unsafe_link_stops_the_download_before_anything_is_copied(source, outside_file, tmp_path, make_link):
    name, reason = make_link(source, outside_file)
    target = tmp_path / "out"
    result = CliRunner().invoke(app, ["download", "--source", "local", str(source), "--local-dir", str(target),
                                      "-q"])
    assert isinstance(result.exception, DownloadError), result.output
    message = result.exception.message
    assert name in message and reason in message and "\n" not in message
    assert result.exception.exit_code != 0 and result.exception.hint
    assert not target.exists()  # refused before the target was even created


def test_cli_prints_one_error_line_and_exits_non_zero(source, outside_file, tmp_path):
    """The reported repro, through the real console script: no traceback, no copy of the outside file."""
    os.symlink(outside_file, source / "notes.txt")
    os.symlink("/nonexistent", source / "x.json")
    target = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "vdeploy", "download", "--source", "local", str(source),
                          "--local-dir", str(target), "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: ") and "notes.txt" in run.stderr and "x.json" in run.stderr
    assert "Traceback" not in run.stderr
    assert not target.exists()


def test_directory_links_are_not_descended(source, checkpoint_files, outside_file, tmp_path):
    os.symlink("..", source / "up")  # walking it would list the parent tree, then loop forever
    os.symlink(outside_file.parent, source / "elsewhere")
    os.symlink("docs", source / "docs-again")
    result = download_model(DownloadRequest(str(source), source="local", local_dir=tmp_path / "out"))
    assert result.ok
    assert {f.path for f in result.files} == set(checkpoint_files)


def test_links_the_checkpoint_rule_allows_are_followed(source, checkpoint_files, tmp_path):
    os.symlink("config.json", source / "alias.json")  # inside the directory
    os.symlink("../config.json", source / "docs" / "config-copy.json")  # nested, still inside
    carried = tmp_path / "nfs" / "tokenizer.json"  # a file of the same name: how `--link` across filesystems looks
    carried.parent.mkdir()
    carried.write_bytes(b'{"version": "1.0"}')
    os.symlink(carried, source / "tokenizer.json")
    # an HF cache snapshot's nested file links into the cache's blob store, judged in its own folder
    params = b'{"dim": 8}'
    blob = tmp_path / "blobs" / hashlib.sha256(params).hexdigest()  # the cache names a blob by its sha256
    blob.parent.mkdir()
    blob.write_bytes(params)
    os.symlink(blob, source / "docs" / "params.json")
    target = tmp_path / "out"
    result = download_model(DownloadRequest(str(source), source="local", local_dir=target))
    assert result.ok, [f.message for f in result.failed]
    config = checkpoint_files["config.json"]
    assert (target / "alias.json").read_bytes() == (target / "docs" / "config-copy.json").read_bytes() == config
    assert (target / "tokenizer.json").read_bytes() == carried.read_bytes()
    assert (target / "docs" / "params.json").read_bytes() == blob.read_bytes()
    assert not any(p.is_symlink() for p in target.rglob("*"))  # copies, not links


class _SwapOnStart(ProgressDisplay):
    """Runs `swap` once listing is done and copying is about to start: a source changed under our feet."""

    def __init__(self, swap):
        self.swap = swap

    def start(self, total_bytes: int, files: int, *, verifying: bool = False) -> None:
        self.swap()


def _copied_bytes(target: Path) -> bytes:
    return b"".join(p.read_bytes() for p in target.rglob("*") if p.is_file())


def test_a_file_swapped_for_a_link_after_listing_is_not_copied(source, checkpoint_files, outside_file, tmp_path):
    victim = source / shard_names(checkpoint_files)[0]

    def swap():
        victim.unlink()
        os.symlink(outside_file, victim)

    target = tmp_path / "out"
    result = download_model(DownloadRequest(str(source), source="local", local_dir=target), display=_SwapOnStart(swap))
    assert not result.ok
    failed = {f.path: f for f in result.failed}
    assert set(failed) == {victim.name} and "outside" in failed[victim.name].message
    assert SECRET not in _copied_bytes(target)


def test_a_folder_swapped_for_a_link_after_listing_is_not_copied(source, outside_file, tmp_path):
    (outside_file.parent / "notes.md").write_bytes(SECRET)  # same name as the listed docs/notes.md

    def swap():
        os.replace(source / "docs", tmp_path / "docs-moved")
        os.symlink(outside_file.parent, source / "docs")

    target = tmp_path / "out"
    result = download_model(DownloadRequest(str(source), source="local", local_dir=target), display=_SwapOnStart(swap))
    assert [(f.path, "outside" in f.message) for f in result.failed] == [("docs/notes.md", True)]
    assert SECRET not in _copied_bytes(target)
