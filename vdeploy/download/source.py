"""What every source (ModelScope, Hugging Face, a local directory) provides to the download pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from vdeploy.download.progress import FileBar
from vdeploy.download.types import RemoteFile, Snapshot


@dataclass
class Fetched:
    """Where a fetched file's bytes are now. `in_place` is True when the client already wrote the final path
    (ModelScope, --link); otherwise the pipeline moves `path` into place once its hash checks out."""

    path: Path
    in_place: bool
    stream_sha256: str | None = None  # sha256 of the bytes read from the source while copying (local source)


class Source(ABC):
    name: str

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """List the files of the requested revision with sizes and published digests; DownloadError on failure."""

    @abstractmethod
    def fetch(self, file: RemoteFile, target: Path, bar: FileBar) -> Fetched:
        """Transfer one file into `target` (resuming a partial one), reporting bytes to `bar`."""

    def resumable_bytes(self, file: RemoteFile, target: Path) -> int:
        """Bytes of `file` an interrupted transfer left in `target` that fetch() continues from rather than
        fetching again: they are on the disk already, so the free-space check must not ask for them twice."""
        return 0


def partial_size(partial: Path, limit: int) -> int:
    """Size of a partial file, 0 when absent or longer than the file it stands for (the client restarts it)."""
    try:
        size = partial.stat().st_size
    except OSError:
        return 0
    return size if size <= limit else 0


def choose_source(flag: str | None, env: dict[str, str] | None = None) -> str:
    """--source, else $VDEPLOY_SOURCE, else vLLM's VLLM_USE_MODELSCOPE (true → modelscope, false → huggingface, as
    in vLLM), else modelscope (the default: most of our users are in China)."""
    import os

    from vdeploy.download.types import SOURCES
    from vdeploy.errors import VdeployError

    env = dict(os.environ) if env is None else env
    choice = flag or env.get("VDEPLOY_SOURCE") or None
    if choice is None and env.get("VLLM_USE_MODELSCOPE"):
        choice = "modelscope" if env["VLLM_USE_MODELSCOPE"].strip().lower() in ("1", "true", "yes") else "huggingface"
    choice = (choice or "modelscope").strip().lower()
    aliases = {"ms": "modelscope", "hf": "huggingface"}
    choice = aliases.get(choice, choice)
    if choice not in SOURCES:
        raise VdeployError(f"unknown source {choice!r}", f"choose one of: {', '.join(SOURCES)}")
    return choice
