"""Hugging Face through `huggingface_hub`: HfApi resolves the revision to a commit and lists the tree (sizes, LFS
sha256, git blob ids); each file is fetched with huggingface_hub's own `http_get` (auth headers, redirects, retries on
dropped connections with a Range request) into our `<file>.<digest>.vdeploy-partial`, which survives Ctrl-C and a
killed process: the next run continues from its size. (`hf_hub_download` writes to a per-process temporary file and
deletes it on failure, so it cannot resume across runs.) The hub's sha256 is checked by us; the client checks sizes.

Endpoint: --endpoint / HF_ENDPOINT (read when the download starts, so mirrors such as https://hf-mirror.com work);
token: --token / HF_TOKEN / the saved `hf auth login` token."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from vdeploy.download.manifest import PARTIAL_SUFFIX
from vdeploy.download.progress import FileBar
from vdeploy.download.source import Fetched, Source, partial_size
from vdeploy.download.types import RemoteFile, Snapshot
from vdeploy.errors import EXIT_USAGE, DownloadError

DEFAULT_ENDPOINT = "https://huggingface.co"
MIRROR_HINT = "check the network; behind a firewall or in China set HF_ENDPOINT to a mirror (e.g. https://hf-mirror.com)"


def tqdm_class_for(bar: FileBar) -> type:
    """A tqdm stand-in bound to one file's bar: huggingface_hub creates it with `total`/`initial` (bytes already on
    disk) and calls update(n) per chunk."""

    class _BarAdapter:
        def __init__(self, *args: object, initial: int = 0, **kwargs: object) -> None:
            bar.reset_to(int(initial or 0))

        def update(self, n: int = 1) -> None:
            bar.advance(int(n))

        def close(self) -> None: ...

        def __enter__(self) -> "_BarAdapter":
            return self

        def __exit__(self, *exc: object) -> None: ...

    return _BarAdapter


class HuggingFaceSource(Source):
    name = "huggingface"

    def __init__(self, model_id: str, revision: str | None, token: str | None, endpoint: str | None = None):
        self.model_id = model_id
        self.revision = revision or "main"
        self.token = token or None
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.commit: str | None = None

    def _api(self):
        from huggingface_hub import HfApi

        from vdeploy import __version__

        return HfApi(endpoint=self.endpoint, token=self.token, library_name="vdeploy", library_version=__version__)

    def snapshot(self) -> Snapshot:
        api = self._api()
        try:
            info = api.model_info(self.model_id, revision=self.revision)
            if not info.sha:
                raise DownloadError(f"{self.endpoint} did not say which commit {self.model_id}@{self.revision} is")
            self.commit = info.sha
            entries = list(api.list_repo_tree(self.model_id, revision=self.commit, recursive=True))
        except Exception as exc:  # every client error is translated below
            raise self._translate(exc) from exc
        files = []
        for entry in entries:
            if not hasattr(entry, "size"):  # a folder
                continue
            if entry.lfs is not None:
                files.append(RemoteFile(entry.path, int(entry.size), "sha256", str(entry.lfs.sha256).lower()))
            else:
                files.append(RemoteFile(entry.path, int(entry.size), "git-sha1", str(entry.blob_id).lower()))
        return Snapshot(self.name, self.model_id, self.revision, self.commit, self.endpoint, files)

    def fetch(self, file: RemoteFile, target: Path, bar: FileBar) -> Fetched:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        from vdeploy import __version__

        partial = partial_path(target, file)
        partial.parent.mkdir(parents=True, exist_ok=True)
        base = Path(file.path).name
        for stale in partial.parent.glob(glob.escape(base) + ".*" + PARTIAL_SUFFIX):
            tag = stale.name[len(base) + 1:-len(PARTIAL_SUFFIX)]
            if stale != partial and _PARTIAL_TAG.fullmatch(tag):  # a partial file of another revision of this file
                stale.unlink(missing_ok=True)
        resume = partial.stat().st_size if partial.exists() else 0
        if resume > file.size:
            partial.unlink()
            resume = 0
        url = hf_hub_url(self.model_id, file.path, revision=self.commit or self.revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token, library_name="vdeploy", library_version=__version__)
        bar.reset_to(resume)
        try:
            with open(partial, "ab") as out:
                http_get(url, out, resume_size=resume, headers=headers, expected_size=file.size,
                         displayed_filename=file.path, tqdm_class=tqdm_class_for(bar))
        except Exception as exc:
            raise self._translate(exc, file.path) from exc
        return Fetched(partial, in_place=False)

    def resumable_bytes(self, file: RemoteFile, target: Path) -> int:
        return partial_size(partial_path(target, file), file.size)

    def _translate(self, exc: Exception, path: str | None = None) -> DownloadError:
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            RepositoryNotFoundError, RevisionNotFoundError)

        where = f"{self.model_id}@{self.revision} on Hugging Face ({self.endpoint})"
        if isinstance(exc, DownloadError):
            return exc
        if isinstance(exc, GatedRepoError):
            return DownloadError(f"{self.model_id} is gated on Hugging Face: accept its terms on the model page",
                                 "then pass --token (or set HF_TOKEN) for the account that accepted them", EXIT_USAGE)
        if isinstance(exc, RevisionNotFoundError):
            return DownloadError(f"revision {self.revision!r} not found for {self.model_id} on Hugging Face "
                                 f"({self.endpoint})", "use a branch, tag or commit of the repository (default: main)",
                                 EXIT_USAGE)
        if isinstance(exc, RepositoryNotFoundError):
            return DownloadError(f"model {self.model_id} not found on Hugging Face ({self.endpoint})",
                                 "check the id (org/name); private models need --token or HF_TOKEN", EXIT_USAGE)
        if isinstance(exc, EntryNotFoundError):
            return DownloadError(f"{path} is listed but cannot be fetched from {where}",
                                 "the repository changed while downloading; run the command again")
        if isinstance(exc, HfHubHTTPError):
            return DownloadError(f"Hugging Face request failed for {path or where}: {_first_line(exc)}", MIRROR_HINT)
        if isinstance(exc, ValueError) and path is not None:  # http_get refuses files over 50 GB without Xet
            return DownloadError(f"{path}: {_first_line(exc)}", "use --source modelscope for this model")
        if isinstance(exc, OSError) and path is not None:
            return DownloadError(f"downloading {path} failed: {_first_line(exc)}",
                                 "run the same command again: it resumes where it stopped")
        return DownloadError(f"cannot reach {self.endpoint} for {path or where}: {_first_line(exc)}", MIRROR_HINT)


_PARTIAL_TAG = re.compile(r"[0-9a-f]{12}|nodigest")


def partial_path(target: Path, file: RemoteFile) -> Path:
    """`<file>.<first 12 hex of its digest>.vdeploy-partial`: a partial file of another revision is never resumed."""
    tag = (file.digest or "nodigest")[:12]
    return target / f"{file.path}.{tag}{PARTIAL_SUFFIX}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
