"""Helpers shared by the download tests (a module of its own: importing `conftest` by name is ambiguous when
several test folders have one)."""

from __future__ import annotations

from pathlib import Path

MODEL_ID = "deepseek-ai/Tiny-Llama"


def shard_names(files: dict[str, bytes]) -> list[str]:
    return sorted(n for n in files if n.endswith(".safetensors"))


def run_download(source: str, endpoint: str, local_dir: Path | None = None, **kwargs):
    from vdeploy.download import DownloadRequest, download_model

    return download_model(DownloadRequest(MODEL_ID, source=source, endpoint=endpoint, local_dir=local_dir, **kwargs))


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write `files` (repo-relative name → bytes) under `root`, creating folders; returns `root`."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root
