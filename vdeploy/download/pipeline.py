"""`download_model`: list → select (our own bookkeeping names and repeated entries aside) → refuse unsafe names →
skip verified files, remove the ones an earlier run fetched that the listing dropped → check disk (partial files
count as there) → fetch and verify each file in parallel (manifest updated after each) → inspect the checkpoint.

Nothing from the repository is ever imported or executed: files are bytes to hash, and the inspector only reads
safetensors headers and JSON."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vdeploy.download.checks import check_checkpoint
from vdeploy.download.disk import ensure_free_space
from vdeploy.download.filecheck import CorruptFileError, Verdict, check_bytes, quarantine
from vdeploy.download.manifest import DirectoryLock, Manifest, ManifestEntry, load_manifest, save_manifest
from vdeploy.download.paths import (default_model_dir, is_bookkeeping_name, safe_relative_path, select_files,
                                    validate_model_id)
from vdeploy.download.progress import FileBar, ProgressDisplay
from vdeploy.download.source import Source
from vdeploy.download.types import SOURCES, CheckpointCheck, DownloadResult, FileResult, RemoteFile, Snapshot
from vdeploy.download.workers import run_in_threads
from vdeploy.errors import EXIT_USAGE, DownloadError, VdeployError

DEFAULT_WORKERS = 8


@dataclass
class DownloadRequest:
    model_id: str  # org/name, or a directory for source "local"
    source: str = "modelscope"
    revision: str | None = None
    local_dir: Path | None = None  # default: $VDEPLOY_HOME/models/<org>/<name>
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    workers: int = DEFAULT_WORKERS
    token: str | None = None
    endpoint: str | None = None  # overrides MODELSCOPE_ENDPOINT / HF_ENDPOINT
    link: bool = False  # local source: link instead of copying


def make_source(request: DownloadRequest) -> Source:
    if request.source == "local":
        from vdeploy.download.local_source import LocalSource

        return LocalSource(request.model_id, link=request.link)
    validate_model_id(request.model_id)
    if request.link:
        raise VdeployError("--link only applies to --source local")
    if request.source == "huggingface":
        from vdeploy.download.hf_source import HuggingFaceSource

        return HuggingFaceSource(request.model_id, request.revision, request.token, request.endpoint)
    if request.source == "modelscope":
        from vdeploy.download.ms_source import ModelScopeSource

        return ModelScopeSource(request.model_id, request.revision, request.token, request.endpoint)
    raise VdeployError(f"unknown source {request.source!r}", f"choose one of: {', '.join(SOURCES)}")


def download_model(request: DownloadRequest, display: ProgressDisplay | None = None,
                   cancel: threading.Event | None = None) -> DownloadResult:
    """Download (or copy) a model, verified. Raises DownloadError / VdeployError for problems found before any
    transfer (unknown model, unsafe names, no space); per-file failures are reported in the result (`ok` False)."""
    display = display or ProgressDisplay()
    cancel = cancel or threading.Event()
    started = time.monotonic()
    source = make_source(request)
    snapshot = source.snapshot()
    files = _selected(snapshot, request)
    target = (request.local_dir or default_model_dir(snapshot.model_id)).expanduser().absolute()
    if request.source == "local":
        source_dir = Path(snapshot.endpoint or "").resolve()
        if target.resolve() == source_dir or source_dir in target.resolve().parents:
            raise VdeployError(f"{target} is (inside) the source directory itself", "choose another --local-dir")
    manifest = _manifest_for(target, snapshot, request)

    skipped, to_fetch, stale = _plan(files, target, manifest, display, cancel, request.workers)
    stale += _dropped_from_listing(snapshot, manifest, target)
    ensure_free_space(target, 0 if request.link else _bytes_needed(source, to_fetch, target))

    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {target}: {exc.strerror or exc}",
                            "choose a writable --local-dir (or export VDEPLOY_HOME)") from exc
    results = list(skipped)
    with DirectoryLock(target):
        for path in stale:
            path.unlink(missing_ok=True)
        manifest.complete = False
        save_manifest(target, manifest)
        if to_fetch:
            display.start(sum(f.size for f in to_fetch), len(to_fetch))
        try:
            for file, outcome, error in run_in_threads(
                    to_fetch, lambda f: _fetch_and_verify(source, f, target, display, cancel),
                    request.workers, cancel):
                result, entry = outcome if outcome is not None else (_failed(file, error), None)
                results.append(result)
                if entry is not None:
                    manifest.files[file.path] = entry
                else:
                    manifest.files.pop(file.path, None)
                save_manifest(target, manifest)
        finally:
            display.stop()
        failed = [r for r in results if r.status in ("corrupt", "failed")]
        checkpoint = check_checkpoint(target, subset=bool(request.include)) if not failed else \
            _not_checked("some files failed")
        manifest.complete = not failed
        manifest.checkpoint_errors = checkpoint.errors
        save_manifest(target, manifest)

    order = {f.path: i for i, f in enumerate(files)}
    results.sort(key=lambda r: order.get(r.path, len(order)))
    return DownloadResult(
        source=snapshot.source, model_id=snapshot.model_id, revision=snapshot.revision, commit=snapshot.commit,
        endpoint=snapshot.endpoint, local_dir=str(target), files=results, checkpoint=checkpoint,
        bytes_total=sum(f.size for f in files),
        bytes_downloaded=sum(r.size for r in results if r.status == "downloaded"),
        elapsed_s=round(time.monotonic() - started, 3),
    )


def _selected(snapshot: Snapshot, request: DownloadRequest) -> list[RemoteFile]:
    listed = [f.path for f in snapshot.files if not is_bookkeeping_name(f.path)]  # never model content (see there)
    names = select_files(listed, request.include, request.exclude)
    if not names:
        raise VdeployError(f"no file of {snapshot.model_id} matches the --include/--exclude patterns",
                           f"the repository has {len(snapshot.files)} files; check the globs")
    chosen = set(names)
    files = _unique([f for f in snapshot.files if f.path in chosen])
    for f in files:
        safe_relative_path(f.path)  # refuse the whole download before any byte is written
    return files


def _unique(files: list[RemoteFile]) -> list[RemoteFile]:
    """One entry per path. A listing can repeat one (a paginated listing that repeats a page): two workers would then
    write the same partial file at once. Entries that disagree on the content leave nothing to check against."""
    by_path: dict[str, RemoteFile] = {}
    for f in files:
        seen = by_path.setdefault(f.path, f)
        if (seen.size, seen.digest_algo, seen.digest) != (f.size, f.digest_algo, f.digest):
            raise DownloadError(f"the source lists {f.path!r} twice with different contents ({seen.size:,} bytes "
                                f"{seen.digest_algo} {seen.digest}; {f.size:,} bytes {f.digest_algo} {f.digest})",
                                "run again later (the listing may be changing), or report it to the model's publisher")
    return list(by_path.values())


def _manifest_for(target: Path, snapshot: Snapshot, request: DownloadRequest) -> Manifest:
    existing = load_manifest(target) if target.is_dir() else None
    if existing is not None and existing.model_id != snapshot.model_id:
        raise DownloadError(f"{target} already holds {existing.model_id}, not {snapshot.model_id}",
                            "choose another --local-dir", EXIT_USAGE)
    manifest = existing or Manifest(snapshot.source, snapshot.model_id, snapshot.revision)
    manifest.source, manifest.revision, manifest.commit = snapshot.source, snapshot.revision, snapshot.commit
    manifest.endpoint, manifest.include, manifest.exclude = snapshot.endpoint, request.include, request.exclude
    return manifest


def _dropped_from_listing(snapshot: Snapshot, manifest: Manifest, target: Path) -> list[Path]:
    """Files an earlier run downloaded (so the manifest lists them) that this revision's listing no longer has: a
    re-sharded release or another --revision into the same directory. Left behind, an old index would keep loading
    the old shards next to the new files. Only files we wrote are removed; --include subsets are still listed."""
    listed = {f.path for f in snapshot.files if not is_bookkeeping_name(f.path)}
    dropped = []
    for name in [n for n in manifest.files if n not in listed]:
        del manifest.files[name]
        if not is_bookkeeping_name(name):  # an older run's entry for our own manifest or lock: forget it only
            dropped.append(target / safe_relative_path(name))  # a tampered manifest names nothing outside
    return dropped


def _plan(files: list[RemoteFile], target: Path, manifest: Manifest, display: ProgressDisplay,
          cancel: threading.Event, workers: int) -> tuple[list[FileResult], list[RemoteFile], list[Path]]:
    """Split into files already good on disk and files to fetch. Good means: listed in the manifest with the same
    digest, size and mtime (trusted, not read), or re-hashed now and matching. Returns the stale files on disk too;
    the caller deletes them under the directory lock, so no client mistakes one for a finished file."""
    skipped, to_fetch, to_hash, stale = [], [], [], []
    for f in files:
        final = target / f.path
        entry = manifest.files.get(f.path)
        if not final.is_file():
            to_fetch.append(f)
            continue
        stat = final.stat()
        if entry is not None and entry.matches_remote(f.digest_algo, f.digest, f.size) \
                and stat.st_size == f.size and stat.st_mtime_ns == entry.mtime_ns:
            skipped.append(FileResult(f.path, f.size, "skipped", entry.sha256, entry.verified_against))
        elif stat.st_size == f.size and f.digest_algo is not None:
            to_hash.append(f)
        else:
            stale.append(final)
            to_fetch.append(f)
    if to_hash:  # e.g. after a killed run, or files put there by hand: hash once, keep what matches
        display.start(sum(f.size for f in to_hash), len(to_hash), verifying=True)
        try:
            for f, verdict, error in run_in_threads(to_hash, lambda f: _check_on_disk(f, target, display, cancel),
                                                    workers, cancel):
                if error is not None:
                    raise error
                if verdict.ok:
                    manifest.files[f.path] = _entry(f, verdict.sha256, verdict.verified_against, target / f.path)
                    skipped.append(FileResult(f.path, f.size, "skipped", verdict.sha256, verdict.verified_against))
                else:
                    stale.append(target / f.path)
                    to_fetch.append(f)
        finally:
            display.stop()
    for path in stale:
        manifest.files.pop(path.relative_to(target).as_posix(), None)
    return skipped, to_fetch, stale


def _bytes_needed(source: Source, to_fetch: list[RemoteFile], target: Path) -> int:
    """What the transfers still add to the disk: a resumed file only its missing tail (its partial file is on the
    disk already; counting the whole file refused resuming a large download on a nearly full disk)."""
    return sum(f.size - source.resumable_bytes(f, target) for f in to_fetch)


def _check_on_disk(file: RemoteFile, target: Path, display: ProgressDisplay, cancel: threading.Event) -> Verdict:
    bar = FileBar(display, display.add_file(file.path, file.size), cancel)
    try:
        return check_bytes(target / file.path, file.size, file.digest_algo, file.digest, None, bar)
    finally:
        bar.close()


def _fetch_and_verify(source: Source, file: RemoteFile, target: Path, display: ProgressDisplay,
                      cancel: threading.Event) -> tuple[FileResult, ManifestEntry | None]:
    bar = FileBar(display, display.add_file(file.path, file.size), cancel)
    try:
        fetched = source.fetch(file, target, bar)
        verdict = check_bytes(fetched.path, file.size, file.digest_algo, file.digest, fetched.stream_sha256, bar)
        final = target / file.path
        if not verdict.ok:
            moved = quarantine(fetched.path, final)
            return FileResult(file.path, file.size, "corrupt", verdict.sha256, verdict.verified_against,
                              f"{verdict.detail}; kept as {moved.name}"), None
        if not fetched.in_place:
            os.replace(fetched.path, final)
        return (FileResult(file.path, file.size, "downloaded", verdict.sha256, verdict.verified_against),
                _entry(file, verdict.sha256, verdict.verified_against, final))
    finally:
        bar.close()


def _entry(file: RemoteFile, sha256: str, against: str, final: Path) -> ManifestEntry:
    return ManifestEntry(file.size, sha256, file.digest_algo, file.digest, against, final.stat().st_mtime_ns)


def _failed(file: RemoteFile, error: BaseException | None) -> FileResult:
    message = error.message if isinstance(error, VdeployError) else f"{type(error).__name__}: {error}"
    return FileResult(file.path, file.size, "corrupt" if isinstance(error, CorruptFileError) else "failed",
                      message=message)


def _not_checked(reason: str) -> CheckpointCheck:
    return CheckpointCheck(ran=False, reason=reason)
