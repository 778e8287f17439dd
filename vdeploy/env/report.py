"""Gather the probes, run the checks, and shape the result for people (a Rich table) and scripts (--json).
The JSON schema is documented in docs/env-check.md; bump SCHEMA_VERSION on any incompatible change."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.config import dataclass_to_dict
from vdeploy.env.checks import FAIL, PASS, WARN, Check, run_checks
from vdeploy.env.fit import FitReport
from vdeploy.env.hardware import Hardware
from vdeploy.env.host import HostInfo
from vdeploy.env.software import SoftwareInfo

SCHEMA_VERSION = 1


@dataclass
class EnvReport:
    hardware: Hardware
    software: SoftwareInfo
    host: HostInfo
    checks: list[Check]
    fit: FitReport | None = None

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def mode(self) -> str:
        return "cpu" if self.hardware.is_cpu_only else "gpu"

    def counts(self) -> dict[str, int]:
        return {s.lower(): sum(c.status == s for c in self.checks) for s in (PASS, WARN, FAIL)}

    def to_dict(self) -> dict:
        hardware = dataclass_to_dict(self.hardware)
        for gpu_dict, gpu in zip(hardware["gpus"], self.hardware.gpus, strict=True):
            gpu_dict.update(compute_capability=f"{gpu.sm // 10}.{gpu.sm % 10}" if gpu.sm is not None else None,
                            bf16=gpu.supports_bf16, fp8_tensor_cores=gpu.has_fp8_tensor_cores, fp8_path=gpu.fp8_path)
        hardware["gpu_count"] = self.hardware.gpu_count
        return {
            "schema_version": SCHEMA_VERSION,
            "ok": self.ok,
            "mode": self.mode,
            "summary": self.counts(),
            "checks": [dataclass_to_dict(c) for c in self.checks],
            "hardware": hardware,
            "software": dataclass_to_dict(self.software),
            "host": dataclass_to_dict(self.host),
            "fit": dataclass_to_dict(self.fit) if self.fit else None,
        }


def build_report(hw: Hardware, sw: SoftwareInfo, host: HostInfo, *, model: str | None = None,
                 tp: int | None = None, pp: int | None = None, gpu_memory_gb: float | None = None) -> EnvReport:
    """Pure given the probe results (the fit part reads the model's config.json)."""
    # with --gpu-memory the --tp is for GPUs that are not here: this machine's GPU count does not bound it
    checks = run_checks(hw, sw, host, tp=tp if gpu_memory_gb is None else None)
    fit = None
    if model is not None:
        from vdeploy.env.fit import check_model_fit

        fit_check, fit = check_model_fit(model, hw, host, tp, pp, gpu_memory_gb)
        checks.append(fit_check)
    return EnvReport(hardware=hw, software=sw, host=host, checks=checks, fit=fit)


def collect_report(*, model: str | None = None, tp: int | None = None, pp: int | None = None,
                   gpu_memory_gb: float | None = None) -> EnvReport:
    """Probe this machine, then check it."""
    from vdeploy.env.hardware import detect_hardware
    from vdeploy.env.host import detect_host
    from vdeploy.env.software import detect_software

    return build_report(detect_hardware(), detect_software(), detect_host(), model=model, tp=tp, pp=pp,
                        gpu_memory_gb=gpu_memory_gb)
