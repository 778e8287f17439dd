"""GPU probe through NVML (`pip install nvidia-ml-py`, imported as `pynvml`): exact numbers without a subprocess.

Returns None when pynvml is not installed or NVML cannot start, so the caller falls back to nvidia-smi.
"""

from __future__ import annotations

from typing import Any

from vdeploy.env.hardware import GpuInfo, Hardware, Interconnect


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_version_from_int(value: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _active_nvlinks(pynvml: Any, handle: Any) -> int:
    active = 0
    for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            if pynvml.nvmlDeviceGetNvLinkState(handle, link) == pynvml.NVML_FEATURE_ENABLED:
                active += 1
        except pynvml.NVMLError:  # link index beyond this GPU's links, or NVLink not supported at all
            break
    return active


def probe() -> Hardware | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: let nvidia-smi (or CPU mode) answer
        return None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda = cuda_version_from_int(int(pynvml.nvmlSystemGetCudaDriverVersion()))
        except pynvml.NVMLError:
            cuda = None
        gpus: list[GpuInfo] = []
        nvlinks: list[int] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                cap: tuple[int, int] | None = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))  # type: ignore
            except pynvml.NVMLError:
                cap = None
            gpus.append(GpuInfo(index, _text(pynvml.nvmlDeviceGetName(handle)), int(memory.total), int(memory.free),
                                cap))
            nvlinks.append(_active_nvlinks(pynvml, handle))
    finally:
        pynvml.nvmlShutdown()
    if len(gpus) < 2:
        interconnect = Interconnect(kind="single" if gpus else "none")
    elif all(nvlinks):
        # Every GPU has NVLink up; whether each pair is linked (an NVSwitch) is refined from nvidia-smi topo.
        interconnect = Interconnect(kind="nvlink", detail=f"{min(nvlinks)}+ active NVLinks per GPU")
    elif any(nvlinks):
        interconnect = Interconnect(kind="nvlink-partial", detail="NVLink on some GPUs only")
    else:
        interconnect = Interconnect(kind="pcie", detail="no active NVLink")
    return Hardware(gpus=gpus, driver_version=driver, cuda_driver_version=cuda, interconnect=interconnect,
                    source="nvml")
