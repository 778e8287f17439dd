"""Free-space check, done before the first byte of a download is written."""

from __future__ import annotations

import shutil
from pathlib import Path

from vdeploy.env.host import existing_ancestor
from vdeploy.errors import DownloadError


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would hold it)."""
    return shutil.disk_usage(existing_ancestor(path)).free


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def ensure_free_space(target: Path, needed: int) -> None:
    """DownloadError (exit 1) when the filesystem of `target` cannot hold `needed` more bytes."""
    if needed <= 0:
        return
    free = free_bytes(target)
    if free < needed:
        raise DownloadError(
            f"not enough disk space in {existing_ancestor(target)}: the download needs {human_bytes(needed)}, "
            f"{human_bytes(free)} free",
            "free some space, or download elsewhere with --local-dir DIR (or export VDEPLOY_HOME=/a/larger/disk)",
        )
