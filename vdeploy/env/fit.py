"""`env check --model PATH --tp N`: will this checkpoint fit these GPUs? The arithmetic is the checkpoint
planner's (vdeploy.checkpoint.planner); this module only feeds it the probed hardware and words the verdict."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.env.checks import FAIL, PASS, WARN, Check
from vdeploy.env.hardware import GIB, Hardware
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
    memory_per_device: int  # bytes the plan was made against (smallest GPU, or available RAM on CPU)
    fp8_path: str | None  # how FP8 weights run here; None for an unquantized checkpoint
    weight_bytes_per_gpu: int
    kv_tokens_per_gpu: int
    max_model_len: int | None
    verdict: str  # fits | fits_limited | does_not_fit
    advice: str


def check_model_fit(model_path: str, hw: Hardware, host: HostInfo, tp: int | None) -> tuple[Check, FitReport | None]:
    from vdeploy.checkpoint.planner import estimate_params, plan_memory
    from vdeploy.config import ModelConfig

    cfg = ModelConfig.from_path(model_path)
    params = estimate_params(cfg)
    on_gpu = not hw.is_cpu_only
    requested_tp = tp
    tp = tp or max(hw.gpu_count, 1)
    if on_gpu:
        memory = hw.min_gpu_memory
        fp8_cores = all(g.has_fp8_tensor_cores for g in hw.gpus)
    else:
        # CPU mode: weights and KV cache live in RAM, one process.
        memory = host.memory_available or host.memory_total or 0
        fp8_cores = False
        tp = 1
    plan = plan_memory(cfg, tp=tp, gpu_memory_bytes=memory, fp8_tensor_cores=fp8_cores)
    is_fp8 = cfg.quant is not None and cfg.quant.method == "fp8"
    fp8_path = None
    if is_fp8:
        fp8_path = "w8a8-block-fp8-gemm" if fp8_cores else "dequantize-to-bf16"
    report = FitReport(
        model=str(model_path),
        architecture=cfg.architecture,
        params_total=params.total,
        params_active=params.active,
        device="cuda" if on_gpu else "cpu",
        tp=tp,
        memory_per_device=memory,
        fp8_path=fp8_path,
        weight_bytes_per_gpu=plan.weight_bytes_per_gpu,
        kv_tokens_per_gpu=plan.kv_tokens_per_gpu,
        max_model_len=plan.max_model_len,
        verdict=plan.verdict,
        advice=plan.advice,
    )
    unit = "GPU" if on_gpu else "host"
    where = f"TP{tp} on {memory / GIB:.0f} GiB per GPU" if on_gpu else f"CPU with {memory / GIB:.0f} GiB RAM available"
    message = (f"{cfg.architecture} {params.total / 1e9:.1f}B params, {where}: {plan.verdict.replace('_', ' ')} "
               f"(weights {plan.weight_bytes_per_gpu / GIB:.1f} GiB/{unit}, KV room {plan.kv_tokens_per_gpu:,} tokens)")
    if fp8_path == "dequantize-to-bf16":
        message += "; FP8 weights dequantized to bf16 (2x memory)"
    if not on_gpu and requested_tp and requested_tp > 1:
        message += f"; --tp {requested_tp} planned as one host: on CPU all ranks share the same RAM"
    remedy = None if plan.verdict == "fits" else plan.advice
    return Check("model_fit", VERDICT_STATUS.get(plan.verdict, WARN), message, remedy), report
