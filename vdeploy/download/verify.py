"""`vdeploy download --verify DIR`: re-hash a downloaded directory against its manifest, then inspect it. No
network. A file that no longer matches is renamed to `<file>.corrupt` and dropped from the manifest, so the next
`vdeploy download` fetches it again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from vdeploy.download.checks import check_checkpoint
from vdeploy.download.filecheck import check_bytes, quarantine
from vdeploy.download.manifest import DirectoryLock, ManifestEntry, load_manifest, save_manifest
from vdeploy.download.paths import safe_relative_path
from vdeploy.download.progress import FileBar, ProgressDisplay
from vdeploy.download.types import DownloadResult, FileResult
from vdeploy.download.workers import run_in_threads
from vdeploy.errors import EXIT_USAGE, DownloadError

NO_MANIFEST_NOTE = "no .vdeploy-download.json: no published hashes to check against, only the checkpoint checks ran"


def verify_directory(directory: str | Path, display: ProgressDisplay | None = None, workers: int = 4,
                     cancel: threading.Event | None = None) -> DownloadResult:
    display = display or ProgressDisplay()
    cancel = cancel or threading.Event()
    started = time.monotonic()
    root = Path(directory).expanduser().absolute()
    if not root.is_dir():
        raise DownloadError(f"{root} is not a directory", "--verify takes a model directory", EXIT_USAGE)
    manifest = load_manifest(root)
    results: list[FileResult] = []
    if manifest is not None:
        with DirectoryLock(root):
            items = sorted(manifest.files.items())
            for name, _ in items:
                safe_relative_path(name)  # a tampered manifest must not make us rename files elsewhere
            display.start(sum(e.size for _, e in items), len(items), verifying=True)
            try:
                for (name, entry), result, error in run_in_threads(
                        items, lambda item: _verify_one(root, item[0], item[1], display, cancel), workers, cancel):
                    if error is not None:
                        result = FileResult(name, entry.size, "failed", message=str(error))
                    results.append(result)
                    if result.status != "verified":
                        manifest.files.pop(name, None)
                        manifest.complete = False
            finally:
                display.stop()
            save_manifest(root, manifest)
        results.sort(key=lambda r: r.path)
    checkpoint = check_checkpoint(root, subset=bool(manifest and manifest.include))
    if manifest is None:
        checkpoint.reason = checkpoint.reason or NO_MANIFEST_NOTE
    return DownloadResult(
        source=manifest.source if manifest else "unknown", model_id=manifest.model_id if manifest else root.name,
        revision=manifest.revision if manifest else "unknown", commit=manifest.commit if manifest else None,
        endpoint=manifest.endpoint if manifest else None, local_dir=str(root), files=results, checkpoint=checkpoint,
        bytes_total=sum(r.size for r in results), bytes_downloaded=0,
        elapsed_s=round(time.monotonic() - started, 3), mode="verify",
    )


def _verify_one(root: Path, name: str, entry: ManifestEntry, display: ProgressDisplay,
                cancel: threading.Event) -> FileResult:
    path = root / name
    if not path.is_file():
        return FileResult(name, entry.size, "missing", message="listed in the manifest but not on disk")
    bar = FileBar(display, display.add_file(name, entry.size), cancel)
    try:
        # The manifest's sha256 was itself checked against the source's digest when the file arrived.
        verdict = check_bytes(path, entry.size, "sha256", entry.sha256, None, bar)
    finally:
        bar.close()
    if verdict.ok:
        return FileResult(name, entry.size, "verified", verdict.sha256, entry.verified_against)
    moved = quarantine(path, path)
    return FileResult(name, entry.size, "corrupt", verdict.sha256, entry.verified_against,
                      f"{verdict.detail}; kept as {moved.name}")
