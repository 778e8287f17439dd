"""Which files of a checkpoint may be read: every path stays inside the model directory.

An index is data from the internet: a `weight_map` entry of `../../etc/x` or `/abs/path` must not make the loader
open a file elsewhere. The rule, applied to every shard name before anything is opened:

- the name is relative and has no `..` component (checked on the text, so a refusal names the index entry);
- after resolving symlinks the file lies inside the (resolved) model directory, or the shard itself is a symlink
  whose target is a hub-cache blob (`…/blobs/<sha256 or git sha>`, the Hugging Face cache layout) or a file of the
  same name (`vdeploy download --link` across filesystems links each file to its source copy);
- the target is a regular file (not a device, a FIFO or a directory).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

_BLOB_NAME = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")


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
                "not_a_regular_file", f"{name} is not a regular file", "re-download this shard")
        if not path.exists() and not path.is_symlink():
            return None
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except FileNotFoundError:
        if not path.is_symlink():
            return None  # absent: the caller reports the missing shard
        return PathProblem("path_outside_model_dir", f"{name} is a dangling symlink ({path.readlink()})",
                           "re-download this shard")
    except (OSError, RuntimeError):  # a symlink loop, or a parent we cannot search
        return None  # opening it reports the real error (e.g. permission denied)
    base = root.resolve()
    inside = target.is_relative_to(base)
    if not inside:
        linked = path.is_symlink() and path.parent.resolve() == base  # the file entry itself is the link
        hub_blob = target.parent.name == "blobs" and bool(_BLOB_NAME.match(target.name))
        if not (linked and (hub_blob or target.name == path.name)):
            return PathProblem("path_outside_model_dir",
                               f"{name} resolves to {target}, outside the model directory; refusing to read it",
                               "copy the file into the directory (symlinks are followed only into a hub cache's "
                               "blobs/ store or to a file of the same name)")
    if not stat.S_ISREG(mode):
        return PathProblem("not_a_regular_file", f"{name} is not a regular file", "re-download this shard")
    return None
