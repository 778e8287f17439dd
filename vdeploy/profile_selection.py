"""Choosing the best profile for a model on a machine, with the reasons (`vdeploy profiles match --explain`).

A profile is eligible when its model match (architecture, parameter range, quantization) and its hardware
requirements (nodes, GPUs per node, memory per GPU, compute capability) hold. Among eligible profiles the winner is
the one that (1) names the model's architecture rather than matching any, (2) spans more nodes, (3) uses more GPUs
(more KV-cache room and throughput on the machine the user has), (4) asks for more memory per GPU (it was written for
bigger GPUs, so it sets longer contexts), (5) asks for a newer compute capability, (6) has the narrower parameter
range; the name breaks ties so the choice is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vdeploy.config import ModelConfig
from vdeploy.env.hardware import Hardware
from vdeploy.profile_schema import Profile


@dataclass
class Selection:
    profile: Profile | None  # None: nothing matched; the built-in defaults apply
    reasons: list[str]  # why the winner matched and won (or why nothing did)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (profile name, why it lost)
    params_b: float = 0.0  # the model's parameter count used for matching, in billions


def model_quantization(cfg: ModelConfig) -> str:
    return cfg.quant.method if cfg.quant is not None and cfg.quant.method else "none"


def _cc(value: tuple[int, int] | None) -> str:
    return "?" if value is None else f"{value[0]}.{value[1]}"


def model_mismatch(p: Profile, cfg: ModelConfig, params_b: float) -> str | None:
    m = p.match
    if m.architectures and cfg.architecture not in m.architectures:
        return f"architecture {cfg.architecture} is not one of {', '.join(m.architectures)}"
    if m.min_params_b is not None and params_b < m.min_params_b:
        return f"{params_b:.1f}B parameters is below its minimum {m.min_params_b:g}B"
    if m.max_params_b is not None and params_b > m.max_params_b:
        return f"{params_b:.1f}B parameters is above its maximum {m.max_params_b:g}B"
    quant = model_quantization(cfg)
    if m.quantization and quant not in m.quantization:
        return f"quantization '{quant}' is not one of {', '.join(m.quantization)}"
    return None


def hardware_mismatch(p: Profile, hw: Hardware) -> str | None:
    req = p.hardware
    if p.is_cpu:
        return None if hw.is_cpu_only else "a CPU profile, and this machine has GPUs"
    if hw.is_cpu_only:
        return f"needs {req.gpu_count} GPU(s); this machine has none"
    if hw.nodes < req.nodes:
        return f"needs {req.nodes} nodes; the deployment spans {hw.nodes}"
    if hw.gpu_count < req.gpu_count:
        return f"needs {req.gpu_count} GPUs per node; this machine has {hw.gpu_count}"
    if hw.min_gpu_memory < req.min_gpu_memory_gb * 1e9:
        return f"needs {req.min_gpu_memory_gb:g} GB per GPU; the smallest GPU has {hw.min_gpu_memory / 1e9:.1f} GB"
    if req.min_compute_capability is not None:
        have = hw.min_compute_capability
        need = req.min_compute_capability
        if have is None or have[0] + have[1] / 10 < need - 1e-6:
            return f"needs compute capability {need:.1f}; the GPUs have {_cc(have)}"
    return None


def rank_key(p: Profile) -> tuple:
    """Bigger is better; see the module docstring."""
    m, req = p.match, p.hardware
    width = (m.max_params_b if m.max_params_b is not None else 1e6) - (m.min_params_b or 0.0)
    return (bool(m.architectures), req.nodes, req.gpu_count * req.nodes, req.min_gpu_memory_gb,
            req.min_compute_capability or 0.0, -width)


def _why_below(winner: Profile, loser: Profile) -> str:
    labels = ("names the architecture", "spans more nodes", "uses more GPUs", "targets bigger GPUs",
              "targets a newer compute capability", "has a narrower parameter range")
    for label, a, b in zip(labels, rank_key(winner), rank_key(loser), strict=True):
        if a != b:
            return f"matches, but {winner.name} {label}"
    return f"matches, but {winner.name} sorts first by name"


def describe_match(p: Profile, cfg: ModelConfig, hw: Hardware, params_b: float) -> list[str]:
    m, req = p.match, p.hardware
    reasons = [f"architecture {cfg.architecture}" + (" is listed" if m.architectures else " (profile takes any)"),
               f"{params_b:.1f}B parameters within [{m.min_params_b or 0:g}, "
               f"{'any' if m.max_params_b is None else format(m.max_params_b, 'g')}]B",
               f"quantization '{model_quantization(cfg)}' accepted"]
    if p.is_cpu:
        reasons.append("CPU profile on a machine without GPUs")
    else:
        gpu = hw.gpus[0].name if hw.gpus else "GPU"
        cc = req.min_compute_capability
        reasons.append(f"needs {req.nodes} node(s) x {req.gpu_count} GPU(s) >= {req.min_gpu_memory_gb:g} GB"
                       f"{f', compute capability >= {cc:.1f}' if cc else ''}; "
                       f"have {hw.nodes} x {hw.gpu_count} {gpu} ({hw.min_gpu_memory / 1e9:.0f} GB, "
                       f"compute capability {_cc(hw.min_compute_capability)})")
    return reasons


def select_profile(model_cfg: ModelConfig, hardware: Hardware, *, explain: bool = False,
                   profiles: list[Profile] | None = None, params_b: float | None = None) -> Selection:
    """The best profile for this model on this hardware. `explain=True` also lists every other profile with why it
    lost (otherwise `rejected` is empty). `params_b` overrides the planner's parameter estimate (billions)."""
    if profiles is None:
        from vdeploy.profile_schema import load_profiles

        profiles = load_profiles()
    if params_b is None:
        from vdeploy.checkpoint.planner import estimate_params

        params_b = estimate_params(model_cfg).total / 1e9
    eligible: list[Profile] = []
    rejected: list[tuple[str, str]] = []
    for p in profiles:
        why = model_mismatch(p, model_cfg, params_b) or hardware_mismatch(p, hardware)
        if why is None:
            eligible.append(p)
        else:
            rejected.append((p.name, why))
    if not eligible:
        reasons = [f"no profile matches {model_cfg.architecture} ({params_b:.1f}B) on this hardware; "
                   "the built-in defaults apply"]
        return Selection(None, reasons, rejected if explain else [], params_b)
    eligible.sort(key=lambda p: p.name)
    eligible.sort(key=rank_key, reverse=True)  # stable: equal keys stay in name order
    winner = eligible[0]
    reasons = describe_match(winner, model_cfg, hardware, params_b)
    if len(eligible) > 1:
        reasons.append(f"ranked first of {len(eligible)} matching profiles")
    losers = [(p.name, _why_below(winner, p)) for p in eligible[1:]]
    return Selection(winner, reasons, (losers + rejected) if explain else [], params_b)
