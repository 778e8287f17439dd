"""A checkpoint directory on this machine or a network mount (NFS): the air-gapped path.

Files are copied (resumable, through `<file>.vdeploy-partial`) or, with --link, hard-linked when source and target
share a filesystem and symlinked otherwise. Expected digests come from, in order: the source's own vdeploy manifest
(a directory that `vdeploy download` filled on a connected machine), a Hugging Face cache blob name (snapshot files
are symlinks to blobs/<sha256>), else the sha256 of the bytes read from the source while copying.

Nothing outside the source directory is read. A file symlink is followed only where the checkpoint loader would
follow it (`vdeploy.checkpoint.paths.resolve_problem`: inside the directory, into a hub cache's blobs/, or to a file
of the same name); directory symlinks are not descended (`up -> ..` would list the parent tree, then loop); any other
link (outside, dangling, a loop) or special file stops the download before anything is copied."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from vdeploy.checkpoint.paths import resolve_problem
from vdeploy.download.hashing import READ_BLOCK
from vdeploy.download.manifest import CORRUPT_SUFFIX, LOCK_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, load_manifest
from vdeploy.download.paths import model_id_part
from vdeploy.download.progress import FileBar
from vdeploy.download.source import Fetched, Source, partial_size
from vdeploy.download.types import RemoteFile, Snapshot
from vdeploy.errors import EXIT_USAGE, DownloadError

_SKIP_DIRS = {".git", ".cache", "__pycache__"}
_SKIP_SUFFIXES = (PARTIAL_SUFFIX, CORRUPT_SUFFIX, ".incomplete", ".lock")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HF_SNAPSHOT = re.compile(r"models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")
_LINK_HINT = ("replace the link with a copy of the file, or remove it: links are followed only inside the directory, "
              "into a hub cache's blobs/ store, or to a file of the same name")


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
        """The id the copy is stored under: the source manifest's, the HF cache's org/name, else local/<dir name>.

        Each half is normalised (`model_id_part`): a directory named "my model" must give an id that `show` and
        `serve` accept (local/my-model), and a manifest carried from elsewhere must not name `../..` as the target."""
        if self._source_manifest is not None and "/" in self._source_manifest.model_id:
            org, name = self._source_manifest.model_id.split("/", 1)
        elif match := _HF_SNAPSHOT.search(self.root.as_posix()):
            org, name = match.group(1), match.group(2)
        else:
            org, name = "local", self.root.name
        return f"{model_id_part(org)}/{model_id_part(name)}"

    def snapshot(self) -> Snapshot:
        files, refused = [], []
        for dirpath, dirnames, filenames in os.walk(self.root):  # never into a linked directory (see module doc)
            dirnames[:] = sorted(d for d in dirnames
                                 if d not in _SKIP_DIRS and not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                if name in (MANIFEST_NAME, LOCK_NAME) or name.endswith(_SKIP_SUFFIXES):
                    continue
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                try:
                    files.append(self._describe(rel, full))
                except DownloadError as exc:
                    refused.append(exc.message)
        if refused:  # all of them in one line, so that one run shows everything to fix
            more = f" (and {len(refused) - 1} more: {'; '.join(refused[1:4])})" if len(refused) > 1 else ""
            raise DownloadError(f"{self.root}: {refused[0]}{more}", _LINK_HINT)
        revision = self._source_manifest.revision if self._source_manifest else "local"
        commit = self._source_manifest.commit if self._source_manifest else None
        return Snapshot(self.name, self.model_id(), revision, commit, str(self.root), files)

    def _describe(self, rel: str, full: Path) -> RemoteFile:
        size = self._readable(rel).st_size
        entry = self._source_manifest.files.get(rel) if self._source_manifest else None
        if entry is not None and entry.size == size:
            return RemoteFile(rel, size, "sha256", entry.sha256, "source-manifest")
        if full.is_symlink() and _HEX64.match(full.resolve().name):
            return RemoteFile(rel, size, "sha256", full.resolve().name, "hf-cache-blob")
        return RemoteFile(rel, size, None, None, "none")

    def _readable(self, rel: str) -> os.stat_result:
        """The stat of the file `rel` stands for, or DownloadError (one line: the file and why) when it may not be
        read: a link out of the directory the shard rule does not allow, a dangling link, a loop, a special file."""
        problem = resolve_problem(self.root, rel)
        if problem is not None:
            raise DownloadError(problem.message.replace("the model directory", "the source directory"), _LINK_HINT)
        try:
            return (self.root / rel).stat()
        except OSError as exc:  # resolve_problem leaves loops and unreadable files to the caller
            why = "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
            raise DownloadError(f"{rel} {why}", _LINK_HINT) from None

    def fetch(self, file: RemoteFile, target: Path, bar: FileBar) -> Fetched:
        self._readable(file.path)  # again: the file may have been swapped for a link since snapshot() listed it
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
        return Fetched(*_copy_resumable(source, _copy_partial(target, file), bar))

    def resumable_bytes(self, file: RemoteFile, target: Path) -> int:
        return 0 if self.link else partial_size(_copy_partial(target, file), file.size)


def _copy_partial(target: Path, file: RemoteFile) -> Path:
    return Path(f"{target / file.path}{PARTIAL_SUFFIX}")


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
