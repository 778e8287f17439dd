"""A checkpoint directory on this machine or a network mount (NFS): the air-gapped path.

Files are copied (resumable, through `<file>.vdeploy-partial`) or, with --link, hard-linked when source and target
share a filesystem and symlinked otherwise. Expected digests come from, in order: the source's own vdeploy manifest
(a directory that `vdeploy download` filled on a connected machine), a Hugging Face cache blob name (snapshot files
are symlinks to blobs/<sha256>), else the sha256 of the bytes read from the source while copying."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from vdeploy.download.hashing import READ_BLOCK
from vdeploy.download.manifest import CORRUPT_SUFFIX, LOCK_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, load_manifest
from vdeploy.download.progress import FileBar
from vdeploy.download.source import Fetched, Source
from vdeploy.download.types import RemoteFile, Snapshot
from vdeploy.errors import EXIT_USAGE, DownloadError

_SKIP_DIRS = {".git", ".cache", "__pycache__"}
_SKIP_SUFFIXES = (PARTIAL_SUFFIX, CORRUPT_SUFFIX, ".incomplete", ".lock")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HF_SNAPSHOT = re.compile(r"models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


class LocalSource(Source):
    name = "local"

    def __init__(self, source_dir: str | Path, link: bool = False):
        self.root = Path(source_dir).expanduser()
        self.link = link
        if not self.root.is_dir():
            raise DownloadError(f"{self.root} is not a directory", "--source local takes a checkpoint directory",
                                EXIT_USAGE)
        self.root = self.root.resolve()
        self._source_manifest = load_manifest(self.root)

    def model_id(self) -> str:
        """The id the copy is stored under: the source manifest's, the HF cache's org/name, else local/<dir name>."""
        if self._source_manifest is not None and "/" in self._source_manifest.model_id:
            return self._source_manifest.model_id
        match = _HF_SNAPSHOT.search(self.root.as_posix())
        if match:
            return f"{match.group(1)}/{match.group(2)}"
        return f"local/{self.root.name}"

    def snapshot(self) -> Snapshot:
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if name in (MANIFEST_NAME, LOCK_NAME) or name.endswith(_SKIP_SUFFIXES):
                    continue
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                files.append(self._describe(rel, full))
        revision = self._source_manifest.revision if self._source_manifest else "local"
        commit = self._source_manifest.commit if self._source_manifest else None
        return Snapshot(self.name, self.model_id(), revision, commit, str(self.root), files)

    def _describe(self, rel: str, full: Path) -> RemoteFile:
        size = full.stat().st_size
        entry = self._source_manifest.files.get(rel) if self._source_manifest else None
        if entry is not None and entry.size == size:
            return RemoteFile(rel, size, "sha256", entry.sha256, "source-manifest")
        if full.is_symlink() and _HEX64.match(full.resolve().name):
            return RemoteFile(rel, size, "sha256", full.resolve().name, "hf-cache-blob")
        return RemoteFile(rel, size, None, None, "none")

    def fetch(self, file: RemoteFile, target: Path, bar: FileBar) -> Fetched:
        source = (self.root / file.path).resolve()
        dest = target / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.link:
            dest.unlink(missing_ok=True)
            try:
                os.link(source, dest)
            except OSError:  # another filesystem (NFS → local disk), or links not allowed
                os.symlink(source, dest)
            bar.advance(file.size)
            return Fetched(dest, in_place=True)
        return Fetched(*_copy_resumable(source, Path(f"{dest}{PARTIAL_SUFFIX}"), bar))


def _copy_resumable(source: Path, partial: Path, bar: FileBar) -> tuple[Path, bool, str]:
    """Copy `source` into `partial`, continuing an earlier partial copy; returns the sha256 of the source stream.

    The source is read from the start either way: bytes already copied are only hashed, the rest hashed and written."""
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.exists() else 0
    if have > source.stat().st_size:
        partial.unlink()
        have = 0
    bar.reset_to(0)
    with open(source, "rb") as src, open(partial, "ab") as out:
        seen = 0
        while block := src.read(READ_BLOCK):
            digest.update(block)
            new = block[max(0, have - seen):]
            seen += len(block)
            if new:
                out.write(new)
            bar.advance(len(block))
    return partial, False, digest.hexdigest()
