"""The machine around the GPUs: shared memory (tensor-parallel ranks exchange data through /dev/shm), free disk
where models are downloaded, CPU count, name and RAM (CPU mode)."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SHM_PATH = Path("/dev/shm")


@dataclass
class HostInfo:
    os: str
    cpu_count: int
    memory_total: int | None  # bytes; None where /proc/meminfo is absent
    memory_available: int | None
    shm_total: int | None  # bytes of /dev/shm; None when there is no /dev/shm
    model_dir: str  # where `vdeploy download` puts models: $VDEPLOY_HOME/models
    disk_free: int | None  # bytes free on the filesystem holding model_dir


def model_home(env: Mapping[str, str] | None = None) -> Path:
    """vdeploy's data directory: $VDEPLOY_HOME, else ~/.cache/vdeploy (downloads go to its models/ folder)."""
    env = os.environ if env is None else env
    if env.get("VDEPLOY_HOME"):
        return Path(env["VDEPLOY_HOME"]).expanduser()
    return Path.home() / ".cache" / "vdeploy"


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent: a directory that does not exist yet (models, a download target) has
    the free space of that parent's filesystem."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (what benchmark reports show), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo() -> tuple[int | None, int | None]:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None, None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024  # kB
    return values.get("MemTotal"), values.get("MemAvailable")


def detect_host(env: Mapping[str, str] | None = None) -> HostInfo:
    models = model_home(env) / "models"
    try:
        disk_free: int | None = shutil.disk_usage(existing_ancestor(models)).free
    except OSError:
        disk_free = None
    try:
        shm_total: int | None = shutil.disk_usage(SHM_PATH).total if SHM_PATH.is_dir() else None
    except OSError:
        shm_total = None
    total, available = _meminfo()
    return HostInfo(
        os=f"{os.uname().sysname} {os.uname().release}" if hasattr(os, "uname") else os.name,
        cpu_count=os.cpu_count() or 1,
        memory_total=total,
        memory_available=available,
        shm_total=shm_total,
        model_dir=str(models),
        disk_free=disk_free,
    )
