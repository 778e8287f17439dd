"""Where `vdeploy serve [PATH_OR_ID]` finds its model: a local directory, an already-downloaded copy of a hub id,
or (no argument) the built-in demo model. A hub id is downloaded only with --download: DeepSeek-R1 is 690 GB, and
nobody wants that to start by surprise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from vdeploy.errors import CheckpointError


@dataclass(frozen=True)
class ModelSource:
    path: Path  # the checkpoint directory
    origin: str  # "path" | "downloaded" | "download" (fetched now) | "demo"
    model_id: Optional[str] = None  # the hub id when given one

    @property
    def default_served_name(self) -> str:
        return self.model_id or self.path.name

    def describe(self) -> str:
        if self.origin == "demo":
            return f"the built-in demo model ({self.path})"
        if self.origin == "downloaded":
            return f"{self.model_id}, already downloaded to {self.path}"
        if self.origin == "download":
            return f"{self.model_id}, downloaded to {self.path}"
        return str(self.path)


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).exists()


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.endswith(("/", "\\"))


def resolve_model_source(
    spec: Optional[str], *, allow_download: bool = False, log: Optional[Callable[[str], None]] = None
) -> ModelSource:
    """`log` receives progress lines (the demo model is fetched and converted on first use)."""
    if spec is None:
        from vdeploy.models.demo import ensure_demo_model

        return ModelSource(Path(ensure_demo_model(log=log)), "demo")
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise CheckpointError(f"{spec}: no such model directory",
                                  hint="pass a directory holding config.json and the *.safetensors shards")
        return ModelSource(path.resolve(), "path")
    if not _looks_like_hub_id(spec):
        raise CheckpointError(f"{spec!r} is neither a model directory nor a hub id like 'deepseek-ai/DeepSeek-R1'")

    from vdeploy.download import resolve_local_model

    local = resolve_local_model(spec)
    if local is not None:
        return ModelSource(Path(local), "downloaded", spec)
    if not allow_download:
        raise CheckpointError(
            f"{spec} is not downloaded yet",
            hint=f"run `vdeploy download {spec}` first (it checks disk space and resumes), "
                 "or add --download to fetch it now",
        )
    from vdeploy.download import DownloadRequest, download_model
    from vdeploy.errors import DownloadError

    result = download_model(DownloadRequest(model_id=spec))
    if result.failed:
        raise DownloadError(f"{len(result.failed)} file(s) of {spec} failed to download",
                            hint=f"run `vdeploy download {spec}` to see which and resume")
    return ModelSource(Path(result.local_dir), "download", spec)
