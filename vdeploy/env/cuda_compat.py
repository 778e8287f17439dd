"""Which torch build a driver can run, and which one to install.

A torch CUDA wheel bundles its CUDA runtime; the driver must support that CUDA version. `nvidia-smi` prints the
newest CUDA version the driver supports ("CUDA Version: 12.4"), so the comparison is between two CUDA versions.
Within one major version CUDA promises minor-version compatibility (a 12.8 runtime mostly runs on a 12.4 driver),
but PTX compiled for the newer minor cannot be JIT-loaded, so that case is a warning, not a pass.
"""

from __future__ import annotations

import re

TORCH_INDEX = "https://download.pytorch.org/whl"

# (CUDA version, wheel tag) of the CUDA builds PyTorch publishes, newest first. Each torch release ships only a few
# of them (2.13: cu126, cu128, cu130); the recommendation picks the newest the driver can run.
TORCH_CUDA_BUILDS: tuple[tuple[tuple[int, int], str], ...] = (
    ((13, 0), "cu130"),
    ((12, 9), "cu129"),
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
    ((12, 4), "cu124"),
    ((12, 1), "cu121"),
    ((11, 8), "cu118"),
)

# Minimum Linux driver per CUDA toolkit release (NVIDIA's CUDA toolkit release notes, "toolkit driver version"):
# used when only the driver version is known, and to say which driver to upgrade to.
MIN_LINUX_DRIVER: tuple[tuple[tuple[int, int], str], ...] = (
    ((13, 0), "580.65.06"),
    ((12, 9), "575.51.03"),
    ((12, 8), "570.26"),
    ((12, 6), "560.28.03"),
    ((12, 5), "555.42.02"),
    ((12, 4), "550.54.14"),
    ((12, 3), "545.23.06"),
    ((12, 2), "535.54.03"),
    ((12, 1), "530.30.02"),
    ((12, 0), "525.60.13"),
    ((11, 8), "520.61.05"),
)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """'12.4' -> (12, 4); '2.13.0+cu128' -> (2, 13, 0); None or garbage -> None."""
    if not text:
        return None
    parts = []
    for piece in text.split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):  # "0rc1": keep the numeric prefix, stop there
            break
    return tuple(parts) or None


def cuda_from_driver(driver_version: str | None) -> str | None:
    """Newest CUDA version a driver supports, from the release-notes table (when nvidia-smi's banner is missing)."""
    driver = parse_version(driver_version)
    if driver is None:
        return None
    for cuda, minimum in MIN_LINUX_DRIVER:
        if driver >= (parse_version(minimum) or ()):
            return f"{cuda[0]}.{cuda[1]}"
    return None


def min_driver_for(cuda_version: str) -> str | None:
    wanted = parse_version(cuda_version)
    if wanted is None:
        return None
    for cuda, minimum in MIN_LINUX_DRIVER:
        if cuda <= wanted[:2]:
            return minimum
    return None


def recommended_torch_build(cuda_driver_version: str | None) -> str | None:
    """Wheel tag of the newest torch CUDA build the driver runs ('cu128'), None when the driver is too old for all."""
    driver = parse_version(cuda_driver_version)
    if driver is None:
        return None
    for cuda, tag in TORCH_CUDA_BUILDS:
        if cuda <= driver[:2]:
            return tag
    return None


def torch_install_command(tag: str) -> str:
    """`tag` is a wheel tag (cu128) or 'cpu'."""
    return f"pip install torch --index-url {TORCH_INDEX}/{tag}"


def compatibility(torch_cuda: str, cuda_driver_version: str) -> str:
    """'ok', 'minor-newer' (runs through minor-version compatibility, PTX JIT fails) or 'too-new'."""
    build = parse_version(torch_cuda) or (0, 0)
    driver = parse_version(cuda_driver_version) or (0, 0)
    if build[:2] <= driver[:2]:
        return "ok"
    return "minor-newer" if build[0] == driver[0] else "too-new"
