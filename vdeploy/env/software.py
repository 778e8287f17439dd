"""What Python-side software is installed: torch (and whether it is a CUDA build), NCCL, Triton, nvcc, pip.

torch is imported inside a try: `vdeploy env check` must work before torch is installed, and a broken CUDA install
can make `import torch` itself raise.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata

from vdeploy import __version__


@dataclass
class SoftwareInfo:
    python_version: str
    pip_version: str | None
    torch_version: str | None  # None: not installed
    torch_cuda: str | None  # torch.version.cuda: the CUDA runtime the wheel was built with; None for a CPU build
    torch_cuda_available: bool
    torch_error: str | None  # import failure or why torch.cuda is not usable
    nccl_version: str | None
    triton_version: str | None
    vdeploy_version: str
    nvcc_version: str | None


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"release\s+([\d.]+)", out)
    return match.group(1) if match else "unknown"


def _probe_torch() -> tuple[str | None, str | None, bool, str | None, str | None]:
    """(version, cuda build, cuda usable, error, nccl version)."""
    try:
        import torch
    except ImportError:
        return None, None, False, None, None
    except Exception as e:  # e.g. a CUDA build whose shared libraries are missing
        return _dist_version("torch"), None, False, f"import torch failed: {e}", None
    cuda_build = torch.version.cuda
    available = False
    error = None
    nccl = None
    if cuda_build:
        try:
            available = bool(torch.cuda.is_available())
        except Exception as e:
            error = str(e)
        try:
            version = torch.cuda.nccl.version()
            nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except Exception:  # a build without NCCL (Windows, some ROCm builds)
            nccl = None
    return str(torch.__version__), cuda_build, available, error, nccl


def detect_software() -> SoftwareInfo:
    torch_version, torch_cuda, available, error, nccl = _probe_torch()
    return SoftwareInfo(
        python_version=platform.python_version(),
        pip_version=_dist_version("pip"),
        torch_version=torch_version,
        torch_cuda=torch_cuda,
        torch_cuda_available=available,
        torch_error=error,
        nccl_version=nccl,
        triton_version=_dist_version("triton"),
        vdeploy_version=__version__,
        nvcc_version=_nvcc_version(),
    )
