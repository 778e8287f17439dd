"""Environment probes and checks behind `vdeploy env check`.

Probes (detect_hardware, detect_software, detect_host) are plain functions returning dataclasses; the checks in
`checks` are pure functions of those results. Nothing here imports torch at module level.
"""

from vdeploy.env.hardware import GpuInfo, Hardware, Interconnect, cpu_hardware, detect_hardware, manual_hardware

__all__ = ["GpuInfo", "Hardware", "Interconnect", "cpu_hardware", "detect_hardware", "manual_hardware"]
