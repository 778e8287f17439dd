"""The checks of `vdeploy env check`: pure functions of the probe results, so tests fake the probes and no check
ever touches the machine. Each check is PASS, WARN or FAIL with a one-line remedy."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.env import cuda_compat
from vdeploy.env.hardware import GIB, Hardware
from vdeploy.env.host import HostInfo
from vdeploy.env.software import SoftwareInfo

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
MIN_PIP = (20,)
MIN_SHM_FOR_TP = 1 * GIB  # NCCL and the multi-process executor stage tensors in /dev/shm; docker's default is 64 MiB
LOW_DISK = 20 * GIB  # below this even the 7B/8B distills (15-16 GB) barely fit


@dataclass
class Check:
    name: str
    status: str  # PASS | WARN | FAIL
    message: str
    remedy: str | None = None


def _gib(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / (1 << 20):.0f} MiB"


def check_python(sw: SoftwareInfo) -> Check:
    version = cuda_compat.parse_version(sw.python_version) or (0,)
    if version[:2] >= MIN_PYTHON:
        return Check("python", PASS, f"Python {sw.python_version}")
    return Check("python", FAIL, f"Python {sw.python_version} is older than 3.10", "install Python 3.10 or newer")


def check_pip(sw: SoftwareInfo) -> Check:
    if sw.pip_version is None:
        return Check("pip", WARN, "pip is not installed in this environment", "python -m ensurepip --upgrade")
    if (cuda_compat.parse_version(sw.pip_version) or (0,)) >= MIN_PIP:
        return Check("pip", PASS, f"pip {sw.pip_version}")
    return Check("pip", FAIL, f"pip {sw.pip_version} is older than 20 (cannot resolve the torch wheels)",
                 "python -m pip install --upgrade pip")


def check_gpus(hw: Hardware, host: HostInfo) -> list[Check]:
    if hw.probe_error:
        return [Check("gpus", FAIL, f"{hw.source} failed: {hw.probe_error}",
                      "the NVIDIA driver is not loaded or mismatched: reinstall it or reboot after a driver update")]
    if hw.is_cpu_only:
        return [Check("gpus", WARN, f"CPU mode: no NVIDIA GPU found; {host.cpu_count} CPU cores, "
                      f"{_gib(host.memory_available)} RAM available (the demo model and tests run on CPU)",
                      "DeepSeek models need NVIDIA GPUs with a driver installed (nvidia-smi must work)")]
    checks = []
    for gpu in hw.gpus:
        cap = f"sm{gpu.sm}" if gpu.sm is not None else "sm?"
        fp8 = "FP8 tensor cores" if gpu.has_fp8_tensor_cores else "no FP8 tensor cores"
        bf16 = "bf16" if gpu.supports_bf16 else "no bf16"
        memory = f"{_gib(gpu.total_memory)} ({_gib(gpu.free_memory)} free)"
        checks.append(Check(f"gpu{gpu.index}", PASS, f"{gpu.name}, {memory}, {cap}, {bf16}, {fp8}"))
    names = {g.name for g in hw.gpus}
    if len(names) > 1:
        checks.append(Check("gpu_mix", WARN, f"mixed GPU models: {', '.join(sorted(names))}",
                            "tensor parallelism runs at the pace and memory of the smallest GPU; "
                            "use CUDA_VISIBLE_DEVICES to pick identical ones"))
    return checks


def check_driver(hw: Hardware) -> Check | None:
    if hw.is_cpu_only:
        return None
    cuda = hw.cuda_driver_version or cuda_compat.cuda_from_driver(hw.driver_version)
    label = f"driver {hw.driver_version or '?'}, supports CUDA {cuda or '?'}"
    if cuda is None:
        return Check("driver", WARN, label + " (CUDA version unknown)",
                     "run nvidia-smi to see the driver's CUDA version")
    if cuda_compat.recommended_torch_build(cuda) is None:
        return Check("driver", FAIL, label + ": too old for every current torch CUDA build",
                     f"upgrade the NVIDIA driver to {cuda_compat.min_driver_for('12.6')} or newer")
    return Check("driver", PASS, label)


def check_torch(hw: Hardware, sw: SoftwareInfo) -> list[Check]:
    cuda_driver = hw.cuda_driver_version or cuda_compat.cuda_from_driver(hw.driver_version)
    tag = "cpu" if hw.is_cpu_only else (cuda_compat.recommended_torch_build(cuda_driver) or "cu126")
    install = cuda_compat.torch_install_command(tag) + " && pip install 'vdeploy[serve]'"
    if sw.torch_version is None:
        return [Check("torch", WARN, "torch is not installed (needed by the engine, not by env check)", install)]
    if sw.torch_error and not sw.torch_cuda:
        return [Check("torch", FAIL, f"torch {sw.torch_version}: {sw.torch_error}", "reinstall: " + install)]
    build = f"CUDA {sw.torch_cuda} build" if sw.torch_cuda else "CPU build"
    checks = [Check("torch", PASS, f"torch {sw.torch_version} ({build})")]
    if hw.is_cpu_only:
        return checks
    if not sw.torch_cuda:
        checks[0] = Check("torch", FAIL, f"torch {sw.torch_version} is a CPU build but this machine has GPUs",
                          "pip uninstall -y torch && " + cuda_compat.torch_install_command(tag))
        return checks
    if cuda_driver is None:
        checks.append(Check("torch_cuda", WARN, f"cannot compare torch's CUDA {sw.torch_cuda} with an unknown driver"))
        return checks
    verdict = cuda_compat.compatibility(sw.torch_cuda, cuda_driver)
    reinstall = "pip uninstall -y torch && " + cuda_compat.torch_install_command(tag)
    upgrade = f"or upgrade the driver to {cuda_compat.min_driver_for(sw.torch_cuda) or 'a newer one'}"
    if verdict == "too-new":
        checks.append(Check("torch_cuda", FAIL,
                            f"torch is built for CUDA {sw.torch_cuda} but the driver supports only CUDA {cuda_driver}",
                            f"{reinstall} ({upgrade})"))
    elif verdict == "minor-newer":
        checks.append(Check("torch_cuda", WARN,
                            f"torch's CUDA {sw.torch_cuda} is newer than the driver's {cuda_driver}: runs through "
                            "minor-version compatibility, but kernels needing PTX JIT fail",
                            f"{reinstall} ({upgrade})"))
    elif not sw.torch_cuda_available:
        checks.append(Check("torch_cuda", FAIL, f"torch cannot use the GPUs: {sw.torch_error or 'cuda unavailable'}",
                            "check CUDA_VISIBLE_DEVICES and that the driver works (nvidia-smi)"))
    else:
        checks.append(Check("torch_cuda", PASS, f"torch CUDA {sw.torch_cuda} runs on driver CUDA {cuda_driver}"))
    return checks


def check_precision(hw: Hardware) -> list[Check]:
    if hw.is_cpu_only:
        return []
    checks = []
    no_bf16 = [g for g in hw.gpus if not g.supports_bf16]
    if no_bf16:
        checks.append(Check("bf16", WARN, f"GPU{no_bf16[0].index} ({no_bf16[0].name}) has no bf16 (needs sm80+)",
                            "serve with --dtype float16"))
    else:
        checks.append(Check("bf16", PASS, "every GPU supports bf16"))
    no_fp8 = [g for g in hw.gpus if not g.has_fp8_tensor_cores]
    if no_fp8:
        checks.append(Check("fp8", WARN, f"GPU{no_fp8[0].index} ({no_fp8[0].name}) has no FP8 tensor cores (sm89+): "
                            "FP8 checkpoints are dequantized to bf16 (2x weight memory)",
                            "DeepSeek-R1's FP8 weights need H100/H200/L40S-class GPUs to run as FP8"))
    else:
        checks.append(Check("fp8", PASS, "FP8 tensor cores: FP8 checkpoints run as W8A8 block-FP8 GEMMs"))
    return checks


def check_multi_gpu(hw: Hardware, sw: SoftwareInfo, host: HostInfo, tp: int | None) -> list[Check]:
    ranks = tp or hw.gpu_count
    checks = []
    if tp is not None and tp > max(hw.gpu_count, 1) and not hw.is_cpu_only:
        checks.append(Check("tp", FAIL, f"--tp {tp} needs {tp} GPUs; this machine has {hw.gpu_count}",
                            f"use --tp {hw.gpu_count} or a larger machine (or pipeline parallelism across nodes)"))
    if ranks > 1 and not hw.is_cpu_only:
        if sw.nccl_version:
            checks.append(Check("nccl", PASS, f"NCCL {sw.nccl_version}"))
        elif sw.torch_cuda:
            checks.append(Check("nccl", FAIL, "torch has no NCCL: tensor parallelism across GPUs is impossible",
                                "install the Linux CUDA build of torch from download.pytorch.org"))
        else:
            checks.append(Check("nccl", WARN, "NCCL version unknown until a CUDA build of torch is installed"))
        kind = hw.interconnect.kind
        detail = hw.interconnect.detail or kind
        if kind == "nvlink":
            checks.append(Check("interconnect", PASS, f"NVLink between every GPU pair: {detail}"))
        elif kind in ("pcie", "nvlink-partial"):
            checks.append(Check("interconnect", WARN, f"tensor-parallel all-reduce crosses PCIe: {detail}",
                                "keep TP within NVLink-connected GPUs; use pipeline parallelism across the rest"))
        else:
            checks.append(Check("interconnect", WARN, "GPU interconnect unknown", "nvidia-smi topo -m shows it"))
        if hw.interconnect.p2p is False:
            checks.append(Check("p2p", WARN, "GPU peer-to-peer access is not supported between every pair",
                                "if NCCL hangs, export NCCL_P2P_DISABLE=1"))
    if host.shm_total is None:
        checks.append(Check("shm", WARN if ranks > 1 else PASS, "/dev/shm is absent",
                            "mount a tmpfs at /dev/shm (docker: --ipc=host)" if ranks > 1 else None))
    elif host.shm_total < MIN_SHM_FOR_TP and ranks > 1:
        checks.append(Check("shm", WARN, f"/dev/shm is {_gib(host.shm_total)}: too small for {ranks} tensor-parallel "
                            "ranks", "docker run --ipc=host (or --shm-size=16g)"))
    else:
        checks.append(Check("shm", PASS, f"/dev/shm {_gib(host.shm_total)}"))
    return checks


def check_disk(host: HostInfo) -> Check:
    where = f"{host.model_dir}: {_gib(host.disk_free)} free"
    if host.disk_free is None:
        return Check("disk", WARN, f"cannot measure free space for {host.model_dir}")
    if host.disk_free < LOW_DISK:
        return Check("disk", WARN, where + " (the 7B/8B distills need ~16 GB, R1 needs ~690 GB)",
                     "export VDEPLOY_HOME=/a/larger/disk")
    return Check("disk", PASS, where)


def check_tools(hw: Hardware, sw: SoftwareInfo) -> list[Check]:
    checks = [Check("nvcc", PASS, f"nvcc {sw.nvcc_version}" if sw.nvcc_version else
                    "nvcc not found (optional: Triton ships its own compiler)")]
    if sw.triton_version:
        checks.append(Check("triton", PASS, f"Triton {sw.triton_version}"))
    elif hw.is_cpu_only:
        checks.append(Check("triton", PASS, "Triton not installed (CPU mode uses the torch kernels)"))
    else:
        checks.append(Check("triton", WARN, "Triton not installed: the engine's GPU kernels need it",
                            "pip install triton"))
    checks.append(Check("vdeploy", PASS, f"vdeploy {sw.vdeploy_version}"))
    return checks


def run_checks(hw: Hardware, sw: SoftwareInfo, host: HostInfo, *, tp: int | None = None) -> list[Check]:
    checks = [check_python(sw), check_pip(sw)]
    checks += check_gpus(hw, host)
    driver = check_driver(hw)
    if driver is not None:
        checks.append(driver)
    checks += check_torch(hw, sw)
    checks += check_precision(hw)
    checks += check_multi_gpu(hw, sw, host, tp)
    checks.append(check_disk(host))
    checks += check_tools(hw, sw)
    return checks
