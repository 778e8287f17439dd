"""`env check --model PATH --tp N`: will this checkpoint fit these GPUs? The arithmetic is the checkpoint
planner's (vdeploy.checkpoint.planner); this module only feeds it the probed hardware and words the verdict."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.env.checks import FAIL, PASS, WARN, Check
from vdeploy.env.hardware import GIB, Hardware, check_gpu_memory_gb
from vdeploy.env.host import HostInfo

VERDICT_STATUS = {"fits": PASS, "fits_limited": WARN, "does_not_fit": FAIL}


@dataclass
class FitReport:
    model: str
    architecture: str
    params_total: int
    params_active: int
    device: str  # cuda | cpu
    tp: int
    memory_per_device: int  # bytes the plan was made against per rank (smallest GPU, or RAM / ranks on CPU)
    fp8_path: str | None  # how FP8 weights run here; None for an unquantized checkpoint
    weight_bytes_per_gpu: int
    kv_tokens_per_gpu: int
    max_model_len: int | None
    verdict: str  # fits | fits_limited | does_not_fit
    advice: str
    pp: int = 1
    target: str = "this machine"  # or "N x G GB GPUs" when planned with --gpu-memory for hardware not here
    quant_scheme: str | None = None  # AWQ / GPTQ / compressed-tensors W8A8, one line; None otherwise
    quant_path: str | None = None  # how that scheme's linears run here (quant_path())


def quant_path(scheme, on_gpu: bool, fp8_cores: bool, int8_cores: bool) -> str:
    """How an AWQ/GPTQ/W8A8 checkpoint's linears run: the Triton kernel, or what replaces it here (whether 8-bit
    weights stay 8-bit is the planner's keeps_8bit_weights, so the path named and the bytes planned agree)."""
    from vdeploy.checkpoint.planner import keeps_8bit_weights

    if not on_gpu:
        return "torch-twin-on-cpu"
    if scheme.bits == 4:
        return "w4a16-triton-gemm"
    kind = "w8a8-fp8" if getattr(scheme, "kind", "") == "float" else "w8a8-int8"
    if not keeps_8bit_weights(kind, "cuda", fp8_cores, int8_cores):
        return "dequantize-to-bf16"
    return f"{kind}-triton-gemm"


def check_model_fit(model_path: str, hw: Hardware, host: HostInfo, tp: int | None, pp: int | None = None,
                    gpu_memory_gb: float | None = None) -> tuple[Check, FitReport | None]:
    """Plan at the requested TP x PP. gpu_memory_gb: plan for GPUs of that size that are not in this machine (the
    question before renting them); on a CPU host without it, the ranks share this host's RAM."""
    from vdeploy.checkpoint.planner import estimate_params, keeps_8bit_weights, plan_memory
    from vdeploy.checkpoint.quant_schemes import quant_scheme
    from vdeploy.config import ModelConfig

    if gpu_memory_gb is not None:
        check_gpu_memory_gb(gpu_memory_gb)
    cfg = ModelConfig.from_path(model_path)
    params = estimate_params(cfg)
    pp = pp or 1
    on_gpu = not hw.is_cpu_only or gpu_memory_gb is not None
    # without --tp the TP x PP ranks take this machine's GPUs ("uses all GPUs"), not all GPUs per pipeline stage
    tp = tp or (max(hw.gpu_count // pp, 1) if not hw.is_cpu_only else 1)
    ranks = tp * pp
    target = "this machine"
    if gpu_memory_gb is not None:
        # decimal GB, as GPU vendors say; the GPUs one rents for R1 (H100/H200) have FP8 cores
        memory, fp8_cores, int8_cores = int(gpu_memory_gb * 1e9), True, True
        target = f"{ranks} x {gpu_memory_gb:g} GB GPUs"
    elif on_gpu:
        memory = hw.min_gpu_memory
        fp8_cores = all(g.has_fp8_tensor_cores for g in hw.gpus)
        int8_cores = all(g.supports_bf16 for g in hw.gpus)  # INT8 tensor-core GEMMs in Triton: sm80+, as bf16
    else:
        # CPU mode: weights and KV cache of every rank live in the same RAM, so each rank gets its share.
        memory = (host.memory_available or host.memory_total or 0) // ranks
        fp8_cores = int8_cores = False
    # on the CPU block FP8 is dequantized but W8A8 stays 8-bit (the twin multiplies it): the planner knows which
    device = "cuda" if on_gpu else "cpu"
    plan = plan_memory(cfg, tp=tp, pp=pp, gpu_memory_bytes=memory, fp8_tensor_cores=fp8_cores, device=device)
    is_fp8 = cfg.quant is not None and cfg.quant.method == "fp8"
    fp8_path = None
    if is_fp8:
        fp8_path = "w8a8-block-fp8-gemm" if keeps_8bit_weights("block-fp8", device, fp8_cores) else "dequantize-to-bf16"
    scheme = quant_scheme(cfg.quant)
    path = quant_path(scheme, on_gpu, fp8_cores, int8_cores) if scheme is not None else None
    report = FitReport(
        model=str(model_path), architecture=cfg.architecture, params_total=params.total,
        params_active=params.active, device="cuda" if on_gpu else "cpu", tp=tp, memory_per_device=memory,
        fp8_path=fp8_path, weight_bytes_per_gpu=plan.weight_bytes_per_gpu, kv_tokens_per_gpu=plan.kv_tokens_per_gpu,
        max_model_len=plan.max_model_len, verdict=plan.verdict, advice=plan.advice, pp=pp, target=target,
        quant_scheme=scheme.describe() if scheme is not None else None, quant_path=path,
    )
    unit = "GPU" if on_gpu else "rank"
    layout = f"TP{tp}" + (f" x PP{pp}" if pp > 1 else "")
    if on_gpu:
        where = f"{layout} on {memory / GIB:.0f} GiB per GPU" + (f" ({target})" if gpu_memory_gb is not None else "")
    elif ranks > 1:
        where = f"{layout} on CPU: {ranks} ranks share this host's RAM, {memory / GIB:.1f} GiB each"
    else:
        where = f"CPU with {memory / GIB:.0f} GiB RAM available"
    message = (f"{cfg.architecture} {params.total / 1e9:.1f}B params, {where}: {plan.verdict.replace('_', ' ')} "
               f"(weights {plan.weight_bytes_per_gpu / GIB:.1f} GiB/{unit}, KV room {plan.kv_tokens_per_gpu:,} tokens)")
    if fp8_path == "dequantize-to-bf16":
        message += "; FP8 weights dequantized to bf16 (2x memory)"
    if scheme is not None:
        message += f"; {scheme.describe()} runs as {path}"
    remedy = None if plan.verdict == "fits" else plan.advice
    if not on_gpu and plan.verdict != "fits":
        remedy = f"{remedy}; for the verdict on GPUs you would rent, add --gpu-memory 141 (H200) or 80 (H100)"
    return Check("model_fit", VERDICT_STATUS.get(plan.verdict, WARN), message, remedy), report
