"""Content hashes: sha256 for everything, plus the git blob sha1 that Hugging Face publishes for non-LFS files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

READ_BLOCK = 8 * 1024 * 1024


def git_blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


def hash_file(path: Path, *, git_sha1: bool = False,
              on_bytes: Callable[[int], None] | None = None) -> tuple[str, str | None]:
    """(sha256, git blob sha1 or None) of a file, reading it once. `on_bytes` reports progress (and may raise to
    cancel)."""
    sha256 = hashlib.sha256()
    sha1 = None
    if git_sha1:
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha1.update(git_blob_header(path.stat().st_size))
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            sha256.update(block)
            if sha1 is not None:
                sha1.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return sha256.hexdigest(), (sha1.hexdigest() if sha1 is not None else None)
