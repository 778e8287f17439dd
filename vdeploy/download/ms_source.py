"""ModelScope through the `modelscope` SDK's hub client (`modelscope_hub`, which `modelscope` >= 1.38 delegates to).

`HubApi.list_repo_files` gives sizes and the published `Sha256`; each file is then fetched with
`HubApi.download_repo(file_list=[that file])`, the SDK's own resumable transfer: a `<file>.incomplete` next to the
target (ranged part files when MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS > 1) that the next run continues, with the SDK's
own sha256 check. We hash the result again from disk. The SDK's tqdm bars are replaced by our callbacks (the CLI sets TQDM_DISABLE).

Endpoint: --endpoint / MODELSCOPE_ENDPOINT (read when the download starts); token: --token / MODELSCOPE_API_TOKEN /
the saved `modelscope login`."""

from __future__ import annotations

import os
from pathlib import Path

from vdeploy.download.filecheck import CorruptFileError
from vdeploy.download.progress import FileBar
from vdeploy.download.source import Fetched, Source, partial_size
from vdeploy.download.types import RemoteFile, Snapshot
from vdeploy.errors import EXIT_USAGE, DownloadError

NETWORK_HINT = ("check the network; set MODELSCOPE_ENDPOINT for a private mirror or the international site "
                "(https://www.modelscope.ai), or use --source huggingface")


def callback_class_for(bar: FileBar) -> type:
    """A modelscope ProgressCallback bound to one file's bar (the SDK instantiates it per file; update() gets byte
    deltas, negative when it restarts a file)."""
    from modelscope_hub import ProgressCallback

    class _BarCallback(ProgressCallback):
        def update(self, size: int) -> None:
            bar.advance(int(size))

        def end(self) -> None: ...

    return _BarCallback


class ModelScopeSource(Source):
    name = "modelscope"

    def __init__(self, model_id: str, revision: str | None, token: str | None, endpoint: str | None = None):
        self.model_id = model_id
        self.revision = revision or "master"
        self.token = token or os.environ.get("MODELSCOPE_API_TOKEN") or None
        self.endpoint = (endpoint or os.environ.get("MODELSCOPE_ENDPOINT") or "").rstrip("/") or None
        self._hub = None

    def _api(self):
        if self._hub is None:
            try:
                from modelscope_hub import HubApi
            except ImportError as exc:
                raise DownloadError("the installed modelscope is too old for vdeploy download",
                                    "pip install -U 'modelscope>=1.38'", EXIT_USAGE) from exc
            self._hub = HubApi(endpoint=self.endpoint, token=self.token)
            if self.endpoint is None:
                # As the SDK's own snapshot_download does: modelscope.cn, else the international modelscope.ai
                # (MODELSCOPE_PREFER_AI_SITE=true reverses the order) -- whichever holds the model.
                try:
                    self.endpoint = self._hub.resolve_endpoint_for_read(self.model_id, repo_type="model")
                    self._hub = HubApi(endpoint=self.endpoint, token=self.token)
                except Exception:  # not found anywhere, or offline: the listing below reports it
                    pass
        return self._hub

    def snapshot(self) -> Snapshot:
        api = self._api()
        try:
            entries = api.list_repo_files(self.model_id, "model", revision=self.revision, recursive=True)
        except Exception as exc:  # translated below
            raise self._translate_listing(exc) from exc
        files = [RemoteFile(e.path, int(e.size or 0), "sha256" if e.sha256 else None,
                            e.sha256.lower() if e.sha256 else None, "hub" if e.sha256 else "none")
                 for e in entries if (e.type or "blob") != "tree" and e.path]
        endpoint = self.endpoint or getattr(getattr(api, "_config", None), "endpoint", None)
        return Snapshot(self.name, self.model_id, self.revision, None, endpoint, files)

    def fetch(self, file: RemoteFile, target: Path, bar: FileBar) -> Fetched:
        entry = {"Path": file.path, "Size": file.size, "Sha256": file.digest if file.digest_algo == "sha256" else None}
        try:
            self._api().download_repo(
                self.model_id, "model", revision=self.revision, local_dir=target,
                # the SDK's lock files go next to the model, not into ~/.cache/modelscope
                cache_dir=target / ".cache" / "modelscope",
                file_list=[entry], max_workers=1, progress_callbacks=[callback_class_for(bar)],
            )
        except Exception as exc:
            raise self._translate_fetch(exc, file.path) from exc
        return Fetched(target / file.path, in_place=True)

    def resumable_bytes(self, file: RemoteFile, target: Path) -> int:
        # the SDK's single-stream partial file (modelscope_hub._download._incomplete_path), which it continues
        return partial_size(Path(f"{target / file.path}.incomplete"), file.size)

    def _translate_listing(self, exc: Exception) -> DownloadError:
        from modelscope_hub.errors import AuthenticationError, NotExistError, PermissionDeniedError

        where = f"ModelScope ({self.endpoint or 'default endpoint'})"
        if isinstance(exc, NotExistError):
            revisions = self._revisions()
            if revisions is None:
                return DownloadError(f"model {self.model_id} not found on {where}",
                                     "check the id (org/name) on modelscope.cn, or try --source huggingface",
                                     EXIT_USAGE)
            known = ", ".join(revisions[:8]) or "none listed"
            return DownloadError(f"revision {self.revision!r} not found for {self.model_id} on {where}",
                                 f"known branches and tags: {known}", EXIT_USAGE)
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            return DownloadError(f"ModelScope refused access to {self.model_id}: {_first_line(exc)}",
                                 "pass --token (or set MODELSCOPE_API_TOKEN) for an account with access", EXIT_USAGE)
        return DownloadError(f"cannot list {self.model_id} on {where}: {_first_line(exc)}", NETWORK_HINT)

    def _revisions(self) -> list[str] | None:
        """Branch and tag names, or None when the repository itself does not exist."""
        from modelscope_hub.errors import NotExistError

        try:
            entries = self._api().list_repo_revisions(self.model_id, "model")
        except NotExistError:
            return None
        except Exception:  # only used to word the error better
            return []
        return [str(e.get("Revision") or e.get("name") or "") for e in entries if isinstance(e, dict)]

    def _translate_fetch(self, exc: Exception, path: str) -> DownloadError:
        from modelscope_hub.errors import FileDownloadError, FileIntegrityError

        if isinstance(exc, FileDownloadError) and getattr(exc, "failed_files", None):
            exc = next(iter(exc.failed_files.values()))
        if isinstance(exc, FileIntegrityError):
            return CorruptFileError(f"{path}: the bytes served do not match the published sha256 or size "
                                 f"({_first_line(exc)})", "run again; if it persists the hub copy is broken")
        return DownloadError(f"downloading {path} failed: {_first_line(exc)}",
                             "run the same command again: it resumes where it stopped")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
