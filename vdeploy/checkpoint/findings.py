"""One integrity finding: what is wrong (or worth knowing), where, and how bad.

Every checker in vdeploy.checkpoint returns these instead of raising, so that one inspection lists every problem of a
checkpoint at once; only input that cannot be inspected at all raises CheckpointError.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" (deployment would fail or be wrong) | "warning" (works, but check it) | "info"
    kind: str  # stable machine-readable key, e.g. "missing_shard" (documented in docs/inspect-shards.md)
    message: str
    file: str | None = None  # file name relative to the checkpoint directory
    tensor: str | None = None
    hint: str | None = None  # what to do about it


def error(kind: str, message: str, *, file: str | None = None, tensor: str | None = None,
          hint: str | None = None) -> Finding:
    return Finding("error", kind, message, file, tensor, hint)


def warning(kind: str, message: str, *, file: str | None = None, tensor: str | None = None,
            hint: str | None = None) -> Finding:
    return Finding("warning", kind, message, file, tensor, hint)


def info(kind: str, message: str, *, file: str | None = None, tensor: str | None = None,
         hint: str | None = None) -> Finding:
    return Finding("info", kind, message, file, tensor, hint)
