"""Where models go, which names are safe, and which files a pattern selects.

Safety rule: a name from a hub (or a manifest) is used only if it stays inside the target directory. Absolute
paths, `..` components, backslashes, drive letters and NUL bytes are refused before any request or write."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from vdeploy.errors import DownloadError, VdeployError
from vdeploy.download.manifest import LOCK_NAME, MANIFEST_NAME, PARTIAL_SUFFIX

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_model_id(model_id: str) -> str:
    """Hub ids are `org/name`; anything else (a path, `..`, extra slashes) is a usage error."""
    if not _MODEL_ID.match(model_id) or ".." in model_id:
        hint = "use the hub id, e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
        if model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().is_dir():
            hint = "to copy a checkpoint directory, use --source local PATH"
        raise VdeployError(f"not a model id: {model_id!r} (expected org/name)", hint)
    return model_id


def model_id_part(text: str) -> str:
    """`text` made usable as one half (org or name) of a model id that `_MODEL_ID` accepts, for ids we make up
    (`local/<directory name>`) or read from another machine's manifest. Runs of other characters become "-", ".."
    becomes ".", leading "._-" go; a valid half comes back unchanged, so an id that worked before names the same
    directory. Deterministic: the same directory always lands in the same place, so a second run resumes."""
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", text)).lstrip("._-")
    if cleaned:
        return cleaned
    # Nothing usable (e.g. a name in Chinese): a digest keeps two such names apart instead of both becoming "model".
    return "model-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def safe_relative_path(name: str) -> PurePosixPath:
    """The repo-relative path of a remote file, or DownloadError when it could escape the target directory."""
    bad = (
        not name
        or "\0" in name
        or "\\" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name) is not None
    )
    parts = name.split("/")  # split by hand: PurePosixPath would silently normalise "a//b" and "./a"
    if bad or any(p in ("..", ".", "") for p in parts):
        raise DownloadError(
            f"refusing remote file name {name!r}: it would be written outside the model directory",
            "the source lists an unsafe path; report it to the model's publisher, or --exclude it",
        )
    return PurePosixPath(*parts)


def is_bookkeeping_name(name: str) -> bool:
    """Whether a repository file would land on a path this download itself writes: our manifest (and its temporary
    copies), the directory lock, our partial files, or `.cache/` (where the ModelScope client keeps its locks, and what
    `huggingface-cli download --local-dir` leaves). A repository uploaded from a directory vdeploy filled carries
    them; fetched, they would overwrite the manifest and the lock the running download holds."""
    top = name.split("/", 1)[0]
    return (top in (MANIFEST_NAME, LOCK_NAME, ".cache") or top.startswith(MANIFEST_NAME + ".")
            or name.endswith(PARTIAL_SUFFIX))


def select_files(names: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """Glob filtering on repo-relative paths: kept if it matches any --include (all when none), and no --exclude.

    A pattern without "/" also matches the base name, so `--include '*.json'` finds nested json files too."""

    def matches(name: str, pattern: str) -> bool:
        return fnmatch.fnmatchcase(name, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(
            name.rsplit("/", 1)[-1], pattern))

    return [n for n in names
            if (not include or any(matches(n, p) for p in include)) and not any(matches(n, p) for p in exclude)]


def model_store() -> Path:
    """Root of downloaded models: $VDEPLOY_HOME/models (VDEPLOY_HOME defaults to ~/.cache/vdeploy)."""
    from vdeploy.env.host import model_home

    return model_home() / "models"


def default_model_dir(model_id: str) -> Path:
    """Where `vdeploy download ORG/NAME` puts a model unless --local-dir says otherwise."""
    org, name = model_id.split("/", 1)
    return model_store() / org / name


def resolve_local_model(model_id_or_path: str | Path) -> Path | None:
    """Find an already-downloaded copy of a model, for `serve` and friends.

    - an existing path (a checkpoint directory, or a single file such as a .gguf) is returned as it is (resolved);
    - an `org/name` id is looked up under $VDEPLOY_HOME/models/org/name and returned only if that directory holds a
      finished download (its .vdeploy-download.json says complete) or, without a manifest, a config.json placed
      there by hand;
    - anything else, or an interrupted download, gives None (the caller then downloads or reports).
    """
    candidate = Path(model_id_or_path).expanduser()
    if candidate.exists():
        return candidate.resolve()
    text = str(model_id_or_path)
    if not _MODEL_ID.match(text) or ".." in text:
        return None
    directory = default_model_dir(text)
    manifest = directory / MANIFEST_NAME
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        return directory.resolve() if data.get("complete") else None
    return directory.resolve() if (directory / "config.json").is_file() else None
