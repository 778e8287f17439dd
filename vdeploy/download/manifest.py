"""The verified-state manifest `.vdeploy-download.json` kept in every model directory, and the directory lock.

The manifest records, per file, the sha256 we computed from the bytes on disk and the digest the source published
(what it was checked against). A file listed here with the same size and mtime is trusted on the next run and not
fetched or hashed again; `vdeploy download --verify DIR` re-hashes everything against it. It is rewritten atomically
(temp file + rename) after every verified file, so a killed process loses at most the file in flight."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vdeploy.errors import DownloadError

MANIFEST_NAME = ".vdeploy-download.json"
LOCK_NAME = ".vdeploy-download.lock"
PARTIAL_SUFFIX = ".vdeploy-partial"
CORRUPT_SUFFIX = ".corrupt"
MANIFEST_FORMAT = 1


@dataclass
class ManifestEntry:
    size: int
    sha256: str  # of the bytes on disk, computed by us
    expected_algo: str | None  # what the source published: sha256 | git-sha1 | None
    expected_digest: str | None
    verified_against: str  # sha256 | git-sha1 | copy-stream | none
    mtime_ns: int

    def matches_remote(self, algo: str | None, digest: str | None, size: int) -> bool:
        return self.size == size and self.expected_algo == algo and self.expected_digest == digest


@dataclass
class Manifest:
    source: str
    model_id: str
    revision: str
    commit: str | None = None
    endpoint: str | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    complete: bool = False  # every selected file verified (serve's resolve_local_model relies on it)
    checkpoint_errors: list[str] = field(default_factory=list)
    files: dict[str, ManifestEntry] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def load_manifest(directory: Path) -> Manifest | None:
    """The manifest of `directory`, or None when there is none. An unreadable one counts as none: every file is then
    re-hashed, which is slow but never wrong."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
        files = {name: ManifestEntry(**entry) for name, entry in data.pop("files", {}).items()}
        if data.get("format") != MANIFEST_FORMAT:
            return None
        return Manifest(files=files, **data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None


def save_manifest(directory: Path, manifest: Manifest) -> None:
    path = directory / MANIFEST_NAME
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)


class DirectoryLock:
    """An exclusive advisory lock on a model directory, so two downloads never write the same files at once.

    flock is released by the kernel when the process dies, so a killed download never leaves a stale lock."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "DirectoryLock":
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DownloadError(f"another vdeploy download is writing to {self.path.parent}",
                                "wait for it to finish, or use another --local-dir") from None
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
