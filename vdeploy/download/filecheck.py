"""Checking one file's bytes against what its source published, and moving a bad file out of the way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vdeploy.download.hashing import hash_file
from vdeploy.download.manifest import CORRUPT_SUFFIX
from vdeploy.download.progress import FileBar
from vdeploy.errors import DownloadError


class CorruptFileError(DownloadError):
    """A client rejected a file's bytes itself (ModelScope checks sha256 too); reported as status "corrupt"."""


@dataclass
class Verdict:
    ok: bool
    sha256: str
    verified_against: str  # sha256 | git-sha1 | copy-stream | none
    detail: str | None = None  # what did not match


def check_bytes(path: Path, size: int, algo: str | None, digest: str | None, stream_sha256: str | None,
                bar: FileBar | None) -> Verdict:
    """Hash `path` from disk (one read) and compare with the published digest, else with the source stream's."""
    actual_size = path.stat().st_size
    if bar is not None:
        bar.set_phase("verify", actual_size)
    sha256, sha1 = hash_file(path, git_sha1=algo == "git-sha1", on_bytes=bar.phase_advance if bar else None)
    if actual_size != size:
        return Verdict(False, sha256, algo or "none", f"size {actual_size} bytes, expected {size}")
    if algo == "sha256":
        return _compare(sha256, digest, sha256, "sha256")
    if algo == "git-sha1":
        return _compare(sha256, digest, sha1, "git-sha1")
    if stream_sha256 is not None:
        return _compare(sha256, stream_sha256, sha256, "copy-stream")
    return Verdict(True, sha256, "none")


def _compare(sha256: str, expected: str | None, actual: str | None, against: str) -> Verdict:
    if expected is not None and actual == expected:
        return Verdict(True, sha256, against)
    return Verdict(False, sha256, against, f"{against} {actual}, expected {expected}")


def quarantine(bad: Path, final: Path) -> Path:
    """Rename a file that failed verification to `<final>.corrupt` so nothing mistakes it for a good one."""
    corrupt = final.with_name(final.name + CORRUPT_SUFFIX)
    os.replace(bad, corrupt)
    return corrupt
