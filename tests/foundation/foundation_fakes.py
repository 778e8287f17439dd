"""Fake probe results for the foundation tests: the checks are pure functions of these dataclasses, so a test
describes a machine instead of needing one."""

from __future__ import annotations

from dataclasses import replace

from vdeploy.env.hardware import GIB, GpuInfo, Hardware, Interconnect
from vdeploy.env.host import HostInfo
from vdeploy.env.software import SoftwareInfo

H200_BYTES = 143771 * (1 << 20)  # what NVML reports for an H200 (141 GB)
H100_BYTES = 81559 * (1 << 20)  # H100 80GB HBM3
A100_BYTES = 81920 * (1 << 20)
L4_BYTES = 23034 * (1 << 20)


def gpu_box(count: int, name: str, memory: int, cc: tuple[int, int], *, kind: str = "nvlink",
            driver: str = "570.124.06", cuda: str = "12.8") -> Hardware:
    gpus = [GpuInfo(i, name, memory, memory - 600 * (1 << 20), cc) for i in range(count)]
    link = "NV18" if kind == "nvlink" else "SYS"
    matrix = [["X" if i == j else link for j in range(count)] for i in range(count)]
    return Hardware(gpus=gpus, driver_version=driver, cuda_driver_version=cuda, source="nvml",
                    interconnect=Interconnect(kind=kind if count > 1 else "single", matrix=matrix,
                                              p2p=True, detail=f"{kind} ({link})"))


def h200_box(**kw) -> Hardware:
    return gpu_box(8, "NVIDIA H200", H200_BYTES, (9, 0), **kw)


def h100_box(count: int = 8, **kw) -> Hardware:
    return gpu_box(count, "NVIDIA H100 80GB HBM3", H100_BYTES, (9, 0), **kw)


def no_gpu() -> Hardware:
    return Hardware(gpus=[], source="none", interconnect=Interconnect(kind="none"))


def cuda_software(torch_cuda: str = "12.8", **kw) -> SoftwareInfo:
    base = SoftwareInfo(python_version="3.11.7", pip_version="24.0",
                        torch_version=f"2.13.0+cu{torch_cuda.replace('.', '')}",
                        torch_cuda=torch_cuda, torch_cuda_available=True, torch_error=None, nccl_version="2.27.3",
                        triton_version="3.9.0", vdeploy_version="0.1.0", nvcc_version=None)
    return replace(base, **kw)


def cpu_software(**kw) -> SoftwareInfo:
    return replace(cuda_software(), **{"torch_version": "2.13.0+cpu", "torch_cuda": None,
                                       "torch_cuda_available": False, "nccl_version": None, **kw})


def host(shm_gib: float | None = 64, disk_gib: float = 2000, **kw) -> HostInfo:
    base = HostInfo(os="Linux 6.8", cpu_count=224, memory_total=2000 * GIB, memory_available=1800 * GIB,
                    shm_total=None if shm_gib is None else int(shm_gib * GIB), model_dir="/data/vdeploy",
                    disk_free=int(disk_gib * GIB))
    return replace(base, **kw)


def by_name(checks) -> dict:
    return {c.name: c for c in checks}
