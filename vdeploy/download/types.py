"""Plain data at the download boundaries: what a source offers, what happened to each file, the run's summary.

`to_dict()` output is the `--json` schema documented in docs/download.md; bump SCHEMA_VERSION on breaking changes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 1

SOURCES = ("modelscope", "huggingface", "local")

# How a file's expected content is known (RemoteFile.digest_algo):
#   "sha256"    the hub publishes the sha256 (ModelScope `Sha256`, Hugging Face LFS oid, a vdeploy manifest of a
#               local source, or a Hugging Face cache blob name)
#   "git-sha1"  Hugging Face non-LFS files: the git blob id, sha1("blob <size>\0" + content)
#   None        nothing published: a local copy is checked against the bytes read from the source while copying
DIGEST_ALGOS = ("sha256", "git-sha1")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative, "/"-separated, as the source names it (checked by paths.safe_relative_path before use)
    size: int
    digest_algo: str | None = None
    digest: str | None = None  # lower-case hex
    origin: str = "hub"  # where the digest comes from: hub | source-manifest | hf-cache-blob | none


@dataclass(frozen=True)
class Snapshot:
    """One revision of one model as a source lists it."""

    source: str
    model_id: str
    revision: str  # what the user asked for (branch, tag, commit) or "local"
    commit: str | None  # the immutable id it resolved to, where the hub has one (Hugging Face)
    endpoint: str | None
    files: list[RemoteFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class FileResult:
    path: str
    size: int
    # download: downloaded | skipped (already verified) | corrupt | failed;  --verify: verified | corrupt | missing
    status: str
    sha256: str | None = None
    verified_against: str | None = None  # sha256 | git-sha1 | copy-stream | none
    message: str | None = None


@dataclass
class CheckpointCheck:
    """Outcome of vdeploy.checkpoint.inspect on the result (skipped for subsets chosen with --include)."""

    ran: bool
    reason: str | None = None  # why it did not run
    errors: list[str] = field(default_factory=list)
    warnings: int = 0


@dataclass
class DownloadResult:
    source: str
    model_id: str
    revision: str
    commit: str | None
    endpoint: str | None
    local_dir: str
    files: list[FileResult]
    checkpoint: CheckpointCheck
    bytes_total: int
    bytes_downloaded: int
    elapsed_s: float
    mode: str = "download"  # download | verify

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status in ("corrupt", "failed", "missing")]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.checkpoint.errors

    def to_dict(self) -> dict:
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        data["ok"] = self.ok
        return data
