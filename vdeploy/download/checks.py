"""Integrity checks of a finished download with the `inspect-shards` inspector (vdeploy.checkpoint.inspect)."""

from __future__ import annotations

from pathlib import Path

from vdeploy.download.types import CheckpointCheck
from vdeploy.errors import VdeployError


def check_checkpoint(directory: Path, *, subset: bool) -> CheckpointCheck:
    """Run the inspector when the directory holds a whole safetensors checkpoint; its error findings fail the run."""
    if subset:
        return CheckpointCheck(ran=False, reason="--include selected a subset of the files")
    if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
        return CheckpointCheck(ran=False, reason="no config.json with safetensors weights to inspect")
    try:
        from vdeploy.checkpoint.inspect import inspect_checkpoint
    except ImportError:
        return CheckpointCheck(ran=False, reason="the checkpoint inspector is not installed")
    try:
        report = inspect_checkpoint(directory)
    except VdeployError as exc:
        return CheckpointCheck(ran=True, errors=[exc.message])
    errors = [f"{f.file}: {f.message}" if f.file else f.message for f in report.findings if f.severity == "error"]
    warnings = sum(1 for f in report.findings if f.severity == "warning")
    return CheckpointCheck(ran=True, errors=errors, warnings=warnings)
