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
    errors = [_error_line(f) for f in report.findings if f.severity == "error"]
    warnings = sum(1 for f in report.findings if f.severity == "warning")
    return CheckpointCheck(ran=True, errors=errors, warnings=warnings)


def _error_line(finding) -> str:
    # the inspector's table shows file and tensor in their own columns, so its messages leave them out; the
    # download summary is one line per error and must name both ("the config implies [64] BF16 ..." alone is
    # not actionable)
    where = ": ".join(part for part in (finding.file, finding.tensor) if part)
    return f"{where}: {finding.message}" if where else finding.message
