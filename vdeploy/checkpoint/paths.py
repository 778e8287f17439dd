"""Which files of a checkpoint may be read: every path stays inside the model directory.

An index is data from the internet: a `weight_map` entry of `../../etc/x` or `/abs/path` must not make the loader
open a file elsewhere, nor may a downloaded `config.json` or `tokenizer.json` that is a symlink to `~/.ssh/…`. The
rule, applied to every shard name and (through `model_file`) every metadata file before anything is opened:

- the name is relative and has no `..` component (checked on the text, so a refusal names the index entry);
- after resolving symlinks the file lies inside the (resolved) model directory, or the shard itself is a symlink
  whose target is a hub-cache blob (`…/blobs/<sha256 or git sha>`, the Hugging Face cache layout) or a file of the
  same name (`vdeploy download --link` across filesystems links each file to its source copy);
- the target is a regular file (not a device, a FIFO or a directory).
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from vdeploy.errors import CheckpointError

_BLOB_NAME = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
# The largest metadata files published (a tokenizer.json, DeepSeek-R1's index) are tens of MB; the bound keeps a
# weights file given where a config belongs from being read whole.
MAX_METADATA_BYTES = 256 << 20


@dataclass(frozen=True)
class PathProblem:
    kind: str  # "path_outside_model_dir" | "not_a_regular_file"
    message: str
    hint: str


def name_problem(name: str) -> PathProblem | None:
    """A problem with a shard name as written in the index, before touching the disk."""
    if not name or "\x00" in name:
        return PathProblem("path_outside_model_dir", f"index entry {name!r} is not a file name",
                           "fix model.safetensors.index.json or re-download it")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
        return PathProblem("path_outside_model_dir",
                           f"index entry {name!r} points outside the model directory; refusing to read it",
                           "shard names in model.safetensors.index.json must be plain file names inside the "
                           "directory; re-download the index")
    return None


def resolve_problem(root: Path, name: str) -> PathProblem | None:
    """A problem with where `root / name` really is (symlinks followed); None when it may be read or is absent
    (a missing shard is reported by the caller)."""
    path = root / name
    try:
        if "/" not in name and not path.is_symlink():  # the common case, one lstat: a plain file in the directory
            mode = path.stat().st_mode
            return None if stat.S_ISREG(mode) else PathProblem(
                "not_a_regular_file", f"{name} is not a regular file", "re-download this file")
        if not path.exists() and not path.is_symlink():
            return None
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except FileNotFoundError:
        if not path.is_symlink():
            return None  # absent: the caller reports the missing shard
        return PathProblem("path_outside_model_dir", f"{name} is a dangling symlink ({path.readlink()})",
                           "re-download this file")
    except (OSError, RuntimeError):  # a symlink loop, or a parent we cannot search
        return None  # opening it reports the real error (e.g. permission denied)
    base = root.resolve()
    inside = target.is_relative_to(base)
    if not inside:
        # the file entry itself is the link, in a real folder of the directory (a nested name, as an HF snapshot's
        # original/params.json, is judged in its own folder; a folder swapped for a link is judged as itself)
        linked = path.is_symlink() and path.parent.resolve() == base.joinpath(*Path(name).parts[:-1])
        hub_blob = target.parent.name == "blobs" and bool(_BLOB_NAME.match(target.name))
        if not (linked and (hub_blob or target.name == path.name)):
            return PathProblem("path_outside_model_dir",
                               f"{name} resolves to {target}, outside the model directory; refusing to read it",
                               "copy the file into the directory (symlinks are followed only into a hub cache's "
                               "blobs/ store or to a file of the same name)")
    if not stat.S_ISREG(mode):
        return PathProblem("not_a_regular_file", f"{name} is not a regular file", "re-download this file")
    return None


class ModelFileRefused(CheckpointError):
    """A file of the model directory that the rule above forbids reading; `problem` says why."""

    def __init__(self, root: Path, problem: PathProblem):
        super().__init__(f"{root}: {problem.message}", hint=problem.hint)
        self.problem = problem


def model_file(root: Path, name: str) -> Path | None:
    """`root / name`, a metadata file of the model directory (config.json, generation_config.json, the index,
    tokenizer.json, tokenizer_config.json, chat_template.*), once the rule above allows reading it; None when it is
    absent. Every read of such a file goes through here. Raises ModelFileRefused naming the file otherwise."""
    problem = resolve_problem(root, name)
    if problem is not None:
        raise ModelFileRefused(root, problem)
    path = root / name
    return path if path.is_file() else None


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "number")


def read_model_json(root: Path, name: str) -> dict[str, Any] | None:
    """Metadata file `name` of model directory `root`, a JSON object (as every one is); None when absent.
    ModelFileRefused as model_file; CheckpointError naming the file when it cannot be read or is no JSON object."""
    path = model_file(root, name)
    if path is None:
        return None
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{path}: too large for a {name}", hint="point at the model directory")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 JSON text", hint="re-download this file") from None
    except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        raise CheckpointError(f"{path}: invalid JSON ({e})", hint="re-download this file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: not a JSON object (got {json_type(doc)})", hint="re-download this file")
    return doc
