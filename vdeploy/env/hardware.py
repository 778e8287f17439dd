"""What GPUs this machine has, found without torch: through NVML (`pynvml`) when it is importable, else by running
`nvidia-smi`. A deployer runs this before the heavy stack is installed, so nothing here may need CUDA libraries.

No GPU is a normal answer (CPU mode), never an exception.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace

from vdeploy.errors import ConfigError

GIB = 1 << 30
# What a GPU-memory size given by hand (--gpu-memory, --gpu-memory-gb; decimal GB) may be: at least env check's
# long-standing 1 GB, at most far beyond any GPU made, and finite, so that the planners' byte counts stay integers.
GPU_MEMORY_GB_RANGE = (1.0, 100_000.0)

# Interconnect kinds, best first. "nvlink-partial": some GPU pairs talk over NVLink, others over PCIe.
INTERCONNECT_KINDS = ("nvlink", "nvlink-partial", "pcie", "single", "none", "unknown")


@dataclass
class GpuInfo:
    index: int
    name: str
    total_memory: int  # bytes
    free_memory: int  # bytes
    compute_capability: tuple[int, int] | None  # (9, 0) for H100/H200; None when the probe could not tell

    @property
    def sm(self) -> int | None:
        """Compute capability as the usual integer: (8, 9) -> 89."""
        if self.compute_capability is None:
            return None
        major, minor = self.compute_capability
        return major * 10 + minor

    @property
    def supports_bf16(self) -> bool:
        return self.sm is not None and self.sm >= 80  # Ampere and later

    @property
    def has_fp8_tensor_cores(self) -> bool:
        return self.sm is not None and self.sm >= 89  # Ada (sm89) and Hopper (sm90) and later

    @property
    def fp8_path(self) -> str:
        """How an FP8 checkpoint (DeepSeek-R1/V3 block FP8) runs on this GPU."""
        if self.has_fp8_tensor_cores:
            return "w8a8-block-fp8-gemm"
        return "dequantize-to-bf16"


@dataclass
class Interconnect:
    kind: str  # one of INTERCONNECT_KINDS
    # link type between GPU i and j as nvidia-smi topo -m prints it ("X", "NV18", "PIX", "SYS", ...)
    matrix: list[list[str]] = field(default_factory=list)
    p2p: bool | None = None  # every GPU pair can read peer memory directly; None: not probed
    detail: str = ""


@dataclass
class Hardware:
    gpus: list[GpuInfo]
    driver_version: str | None = None  # e.g. "550.54.15"
    cuda_driver_version: str | None = None  # newest CUDA the driver supports, e.g. "12.4"
    interconnect: Interconnect = field(default_factory=lambda: Interconnect(kind="none"))
    source: str = "none"  # nvml | nvidia-smi | none | manual
    nodes: int = 1  # a probe sees one node; multi-node deployments say how many
    probe_error: str | None = None  # a GPU tool exists but failed (driver not loaded, ...)

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def is_cpu_only(self) -> bool:
        return not self.gpus

    @property
    def min_gpu_memory(self) -> int:
        """Memory of the smallest GPU: tensor parallelism splits evenly, so the smallest one bounds every rank."""
        return min((g.total_memory for g in self.gpus), default=0)

    @property
    def min_compute_capability(self) -> tuple[int, int] | None:
        caps = [g.compute_capability for g in self.gpus]
        if not caps or any(c is None for c in caps):
            return None
        return min(caps)  # type: ignore[type-var]


def gpu_memory_gb_problem(gb: float) -> str | None:
    """Why `gb` cannot be one GPU's memory in GB (inf, nan, zero or less, absurdly large); None when it can."""
    low, high = GPU_MEMORY_GB_RANGE
    if not low <= gb <= high:  # also false for nan
        return f"GPU memory must be a number of GB from {low:g} to {high:g}, got {gb:g}"
    return None


def check_gpu_memory_gb(gb: float) -> float:
    """`gb` when it can be one GPU's memory, else ConfigError (exit 2): for callers not behind the CLI's check."""
    problem = gpu_memory_gb_problem(gb)
    if problem is not None:
        raise ConfigError(problem, hint="e.g. 80 for an H100, 141 for an H200")
    return gb


def parse_gpu_memory_gb(text: str | float) -> float:
    """The value of every GPU-memory option (typer's parser=): a usage error (exit 2) unless in range."""
    from typer import BadParameter

    try:
        gb = float(text)
    except ValueError:
        raise BadParameter(f"{text!r} is not a number of GB") from None
    problem = gpu_memory_gb_problem(gb)
    if problem is not None:
        raise BadParameter(problem)
    return gb


def cpu_hardware() -> Hardware:
    return Hardware(gpus=[], source="none", interconnect=Interconnect(kind="none"))


def manual_hardware(
    gpu_count: int,
    gpu_memory_gb: float,
    compute_capability: tuple[int, int] = (9, 0),
    nodes: int = 1,
    name: str = "GPU",
) -> Hardware:
    """Hardware described by hand (planning for a box you are not on): `profiles match --gpus 8 --gpu-memory-gb 141`."""
    memory = int(check_gpu_memory_gb(gpu_memory_gb) * 1e9)
    gpus = [GpuInfo(i, name, memory, memory, compute_capability) for i in range(gpu_count)]
    kind = "single" if gpu_count == 1 else ("none" if gpu_count == 0 else "unknown")
    return Hardware(gpus=gpus, source="manual", nodes=nodes, interconnect=Interconnect(kind=kind))


def restrict_to_visible(hw: Hardware, visible: str | None) -> Hardware:
    """Keep the GPUs CUDA_VISIBLE_DEVICES lets CUDA see (NVML and nvidia-smi list every GPU regardless), in its order.

    Only integer lists are interpreted; UUID or MIG lists leave the probe as it is, since the probe has no UUIDs.
    """
    if visible is None:
        return hw
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if entries and not all(e.lstrip("-").isdigit() for e in entries):
        return hw
    by_index = {g.index: g for g in hw.gpus}
    order: list[int] = []
    for entry in entries:
        index = int(entry)
        if index not in by_index:  # CUDA stops at the first invalid entry: negative, or a GPU not in this machine
            break
        order.append(index)
    keep = [by_index[i] for i in order]
    position = {g.index: pos for pos, g in enumerate(hw.gpus)}
    matrix = hw.interconnect.matrix
    if matrix and len(matrix) == len(hw.gpus):
        matrix = [[matrix[position[a.index]][position[b.index]] for b in keep] for a in keep]
    interconnect = replace(hw.interconnect, matrix=matrix)
    if len(keep) < 2:
        interconnect = Interconnect(kind="single" if keep else "none")
    return replace(hw, gpus=keep, interconnect=interconnect)


def detect_hardware() -> Hardware:
    """Probe the GPUs: NVML first (exact, no subprocess), then nvidia-smi, else CPU mode; then apply
    CUDA_VISIBLE_DEVICES."""
    from vdeploy.env import nvidia_smi, nvml

    hardware = nvml.probe()
    if hardware is not None:
        if hardware.gpu_count > 1 and shutil.which("nvidia-smi"):
            # NVML only says which GPUs have NVLink up; nvidia-smi's topology gives the link of every pair and P2P.
            topo = nvidia_smi.probe_topology(hardware.gpu_count)
            if topo is not None:
                hardware.interconnect = topo
    elif shutil.which("nvidia-smi"):
        hardware = nvidia_smi.probe()
    else:
        return cpu_hardware()
    return restrict_to_visible(hardware, os.environ.get("CUDA_VISIBLE_DEVICES"))
