"""Model downloads from ModelScope, Hugging Face or a local directory: resumable, sha256-verified, inspected.

Public API (see docs/download.md):
    download_model(DownloadRequest, display=None, cancel=None) -> DownloadResult
    verify_directory(directory, display=None, workers=4) -> DownloadResult
    resolve_local_model(model_id_or_path) -> Path | None     # what `serve` uses to find a downloaded model
    default_model_dir(model_id) -> Path, model_store() -> Path
"""

from vdeploy.download.paths import default_model_dir, model_store, resolve_local_model
from vdeploy.download.pipeline import DownloadRequest, download_model
from vdeploy.download.types import DownloadResult, FileResult, RemoteFile, Snapshot
from vdeploy.download.verify import verify_directory

__all__ = [
    "DownloadRequest", "DownloadResult", "FileResult", "RemoteFile", "Snapshot", "default_model_dir",
    "download_model", "model_store", "resolve_local_model", "verify_directory",
]
