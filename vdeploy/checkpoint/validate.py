"""The one header validation of a checkpoint, shared by `vdeploy inspect-shards` (which lists every finding) and the
weight loader (which refuses on the first error, before reading any tensor data).

Reads the index and each shard's header only: which files (confined to the model directory), the headers' dtype /
shape / offset rules, index against headers, headers against the config, and (for the loader) whether the
tensor-parallel size splits the weights into whole FP8 blocks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vdeploy.checkpoint.checks import FindingList, Located, check_against_config, collect_tensors
from vdeploy.checkpoint.findings import Finding, error
from vdeploy.checkpoint.index import ShardMap, discover_shards
from vdeploy.checkpoint.safetensors_header import ShardHeader, read_header
from vdeploy.checkpoint.tp_rules import tp_advice, tp_problem
from vdeploy.config import ModelConfig
from vdeploy.errors import CheckpointError

_HEADER_THREADS = 8  # R1 has 163 shards; header reads are small and latency-bound (network filesystems)


@dataclass
class HeaderValidation:
    shard_map: ShardMap
    headers: list[ShardHeader]
    tensors: dict[str, Located]  # tensor name -> its header entry and file
    findings: FindingList = field(default_factory=FindingList)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings.items if f.severity == "error"]


class CheckpointInvalidError(CheckpointError):
    """The loader refuses a checkpoint that fails validation. The message names the file and tensor and says what
    is wrong; the hint says what to do. Exit code 2 (unusable input), like every CheckpointError."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None,
                 findings: list[Finding] | None = None):
        super().__init__(message, hint, exit_code)
        self.findings = findings or []


def validate_headers(root: Path, cfg: ModelConfig | None, out: FindingList | None = None) -> HeaderValidation:
    """Map the checkpoint's files and check every header (and, with `cfg`, the headers against the config).
    Raises CheckpointError only when there is nothing to validate (no directory, no weights)."""
    out = out if out is not None else FindingList()
    shard_map, index_findings = discover_shards(root)
    out.extend(index_findings)
    with ThreadPoolExecutor(max_workers=min(_HEADER_THREADS, max(1, len(shard_map.files)))) as pool:
        results = list(pool.map(lambda f: read_header(root / f, f), shard_map.files))
    headers = [h for h, _ in results]
    for _, findings in results:
        out.extend(findings)
    tensors = collect_tensors(headers, shard_map, out)
    if cfg is not None:
        check_against_config(cfg, tensors, out)
    return HeaderValidation(shard_map, headers, tensors, out)


def tp_finding(cfg: ModelConfig, tp: int) -> Finding | None:
    problem = tp_problem(cfg, tp)
    if problem is None:
        return None
    return error("unsupported_tp", problem, file="config.json", hint=tp_advice(cfg, tp))


def validate_for_loading(root: str | Path, cfg: ModelConfig, tp: int = 1) -> HeaderValidation:
    """What the loader runs before reading any data: raises CheckpointInvalidError on the first error."""
    root = Path(root)
    finding = tp_finding(cfg, tp)
    if finding is not None:
        raise refusal(root, [finding])
    validation = validate_headers(root, cfg)
    errors = validation.errors
    if errors:
        raise refusal(root, errors)
    return validation


def refusal(root: Path, errors: list[Finding]) -> CheckpointInvalidError:
    first = errors[0]
    # "<dir>: <file>: tensor <name>: <what> [kind]": grep-able, and the file comes first as in every loader error
    where = ": ".join(p for p in (first.file, f"tensor {first.tensor}" if first.tensor else None) if p)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    hint = first.hint or "re-download the checkpoint"
    hint += f"; `vdeploy inspect-shards {root}` lists every problem"
    return CheckpointInvalidError(f"{root}: {where + ': ' if where else ''}{first.message} [{first.kind}]{more}",
                                  hint, findings=errors)
