"""`inspect_checkpoint`: everything `vdeploy inspect-shards` reports about a checkpoint directory, from its small
files and its shard headers only (never the tensor data).

Reads config.json, generation_config.json, tokenizer_config.json (+ tokenizer.json when present),
model.safetensors.index.json and each shard's header (in a thread pool: 163 files for DeepSeek-R1), then runs the
integrity checks, counts parameters and storage, plans memory and asks the profile matcher for a recommendation.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from vdeploy.checkpoint.checks import FindingList, check_tokenizer
from vdeploy.checkpoint.findings import Finding, error, info, warning
from vdeploy.checkpoint.paths import ModelFileRefused, read_model_json
from vdeploy.checkpoint.planner import estimate_params, plan_memory, plan_table
from vdeploy.checkpoint.report import Architecture, InspectReport, PlanSet
from vdeploy.checkpoint.storage import tally
from vdeploy.checkpoint.validate import tp_finding, validate_headers
from vdeploy.config import ModelConfig
from vdeploy.env.hardware import check_gpu_memory_gb
from vdeploy.errors import VdeployError

GB = 1000**3  # GPU sizes are given in decimal GB, as GPU vendors and `profiles match --gpu-memory-gb` do
# Planned when the caller names no GPU: the two sizes DeepSeek deployments are decided on (H100/A100 80 GB, H200).
DEFAULT_GPU_SIZES_GB = (80, 141)
PARAM_TOLERANCE = 0.005  # header count vs config estimate; beyond this the config and weights disagree
# Transformers writes this sentinel as model_max_length when a tokenizer sets no limit.
_NO_LIMIT = 10**18


def inspect_checkpoint(path: str | Path, *, gpu_memory_gb: list[float] | None = None,
                       tp_sizes: list[int] | None = None, gpu_memory_utilization: float = 0.9,
                       fp8_tensor_cores: bool = True, kv_cache_dtype_bytes: int = 2,
                       max_model_len: int | None = None, hardware: Any = None,
                       verify_data: bool = False) -> InspectReport:
    """Inspect the checkpoint at `path`. Raises CheckpointError (exit 2) only when there is nothing to inspect.

    gpu_memory_gb: GPU sizes to plan for (default: the detected `hardware`'s, else 80 and 141 GB).
    tp_sizes: tensor-parallel sizes to plan (default: 1, 2, 4, 8, plus PP 2 when TP 8 does not fit).
    hardware: a vdeploy.env.hardware.Hardware to plan for and match profiles against.
    verify_data: also read every tensor's data once (NaN/Inf, FP8 scales, all-zero weights; data_verify.py).
    """
    start = time.perf_counter()
    for gb in gpu_memory_gb or []:
        check_gpu_memory_gb(gb)
    root = Path(path).expanduser()
    out = FindingList()
    if not root.is_dir():
        validate_headers(root, None, out)  # raises the "does not exist" / "not a directory" CheckpointError
    config_read: list[str] = []
    cfg = _read_config(root, out, config_read)
    validation = validate_headers(root, cfg, out)
    shard_map, headers, tensors = validation.shard_map, validation.headers, validation.tensors
    files_read = ([shard_map.index_file] if shard_map.index_file else []) + config_read
    _read_json(root, "generation_config.json", out, files_read)
    max_length, tokenizer_vocab = _read_tokenizer(root, out, files_read)

    architecture = None
    if cfg is not None:
        check_tokenizer(cfg, max_length, tokenizer_vocab, out)
        architecture = Architecture.from_config(cfg)
        architecture.tokenizer_max_length = max_length
        architecture.tokenizer_vocab_size = tokenizer_vocab
        for tp in tp_sizes or []:
            finding = tp_finding(cfg, tp)
            if finding is not None:
                out.add(finding)

    data = None
    if verify_data:
        from vdeploy.checkpoint.data_verify import verify_data as scan

        data = scan(root, headers, out)
    parameters, storage, load_bytes = tally(headers, tensors, cfg, shard_map.index_total_size)
    if cfg is not None:
        expected = estimate_params(cfg)
        parameters.expected_total = expected.total
        parameters.expected_by_component = expected.by_component
        if expected.total and abs(parameters.total - expected.total) > PARAM_TOLERANCE * expected.total:
            out.add(warning("param_count_mismatch", f"the headers hold {parameters.total:,} parameters but the config "
                            f"implies {expected.total:,}", hint="config.json may not belong to these weights"))
    if storage.index_total_size is not None and storage.index_total_size != storage.tensor_bytes:
        out.add(warning("total_size_mismatch", f"index metadata.total_size {storage.index_total_size:,} ≠ "
                        f"{storage.tensor_bytes:,} bytes of tensors in the headers", file=shard_map.index_file))

    plans: list[PlanSet] = []
    profile, reasons = None, []
    if cfg is not None:
        # the measured bytes of what serving loads, unless the headers contradict the config's layout
        measured = None if _has_kind(out, "shape_mismatch") else (load_bytes or None)
        sizes = gpu_memory_gb or _hardware_sizes(hardware) or list(DEFAULT_GPU_SIZES_GB)
        plans = [_plan_set(cfg, int(gb * GB), tp_sizes, gpu_memory_utilization, measured,
                           kv_cache_dtype_bytes, max_model_len, fp8_tensor_cores) for gb in sizes]
        profile, reasons = _recommend_profile(cfg, hardware, plans, fp8_tensor_cores, out)

    return InspectReport(path=str(root), files_read=files_read, architecture=architecture, parameters=parameters,
                         storage=storage, findings=out.result(), plans=plans, recommended_profile=profile,
                         profile_reasons=reasons, elapsed_s=round(time.perf_counter() - start, 3), data=data)


def _has_kind(out: FindingList, kind: str) -> bool:
    return any(f.kind == kind for f in out.items)


def _read_json(root: Path, name: str, out: FindingList, files_read: list[str],
               when_absent: Finding | None = None) -> dict[str, Any] | None:
    """Metadata file `name`, read only as vdeploy.checkpoint.paths allows; None, with a finding saying why, when it
    is refused, unreadable or no JSON object, and None with `when_absent` added (if given) when it is absent."""
    try:
        doc = read_model_json(root, name)
    except ModelFileRefused as e:
        out.add(error(e.problem.kind, e.problem.message, file=name, hint=e.problem.hint))
        return None
    except VdeployError as e:  # unreadable, not JSON, or not an object
        files_read.append(name)
        out.add(error("bad_json", e.message, file=name, hint=e.hint))
        return None
    if doc is None and when_absent is not None:
        out.add(when_absent)
    elif doc is not None:
        files_read.append(name)
    return doc


def _read_config(root: Path, out: FindingList, files_read: list[str]) -> ModelConfig | None:
    doc = _read_json(root, "config.json", out, files_read, when_absent=error(
        "no_config", "no config.json: architecture, shapes and memory cannot be checked", file="config.json",
        hint="download config.json with the weights"))
    if doc is None:
        return None
    try:
        return ModelConfig.from_dict(doc)
    except VdeployError as e:  # a malformed value, or an architecture vdeploy does not serve
        out.add(error("unsupported_config", e.message, file="config.json", hint=e.hint))
    return None


def _read_tokenizer(root: Path, out: FindingList, files_read: list[str]) -> tuple[int | None, int | None]:
    """(model_max_length, highest token id + 1) from tokenizer_config.json and tokenizer.json, when present."""
    config = _read_json(root, "tokenizer_config.json", out, files_read) or {}
    max_length = config.get("model_max_length")
    max_length = int(max_length) if isinstance(max_length, (int, float)) and 0 < max_length < _NO_LIMIT else None
    ids = [int(k) for k in (config.get("added_tokens_decoder") or {}) if str(k).isdecimal()]  # int() reads these
    tokenizer = _read_json(root, "tokenizer.json", out, files_read) or {}
    model, added = tokenizer.get("model"), tokenizer.get("added_tokens")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    ids.extend(v for v in (vocab.values() if isinstance(vocab, dict) else ()) if isinstance(v, int))
    ids.extend(t["id"] for t in (added if isinstance(added, list) else ()) if isinstance(t, dict)
               and isinstance(t.get("id"), int))
    return max_length, (max(ids) + 1 if ids else None)


def _hardware_sizes(hardware: Any) -> list[float] | None:
    if hardware is None or not getattr(hardware, "gpus", None):
        return None
    return [hardware.min_gpu_memory / GB]


def _plan_set(cfg: ModelConfig, gpu_bytes: int, tp_sizes: list[int] | None, utilization: float,
              weight_bytes: int | None, kv_bytes: int, max_model_len: int | None, fp8_cores: bool) -> PlanSet:
    common: dict[str, Any] = {"gpu_memory_utilization": utilization, "weight_bytes": weight_bytes,
                              "kv_cache_dtype_bytes": kv_bytes, "max_model_len": max_model_len,
                              "fp8_tensor_cores": fp8_cores}
    if tp_sizes:
        plans = [plan_memory(cfg, tp=tp, gpu_memory_bytes=gpu_bytes, **common) for tp in tp_sizes]
    else:
        plans = plan_table(cfg, gpu_bytes, **common)
    return PlanSet(gpu_memory_bytes=gpu_bytes, gpu_memory_utilization=utilization, fp8_tensor_cores=fp8_cores,
                   plans=plans)


def _recommend_profile(cfg: ModelConfig, hardware: Any, plans: list[PlanSet], fp8_cores: bool,
                       out: FindingList) -> tuple[str | None, list[str]]:
    """The profile matcher's choice for the given hardware, else for the smallest fitting layout of the first GPU
    size planned (as if on that many such GPUs)."""
    try:
        from vdeploy.env.hardware import manual_hardware
        from vdeploy.profiles import select_profile
    except ImportError as e:  # the profile matcher is an optional part while vdeploy is assembled
        out.add(info("no_profile_matcher", f"profile recommendation unavailable ({e})"))
        return None, []
    if hardware is None or not getattr(hardware, "gpus", None):
        first = plans[0] if plans else None
        fitting = [p for p in first.plans if p.verdict != "does_not_fit"] if first else []
        if not fitting or first is None:
            return None, ["no planned layout fits, so no profile applies"]
        gpus = fitting[0].num_gpus
        nodes = math.ceil(gpus / 8)
        hardware = manual_hardware(gpus // nodes, first.gpu_memory_bytes / GB,
                                   compute_capability=(9, 0) if fp8_cores else (8, 0), nodes=nodes)
    try:
        selection = select_profile(cfg, hardware)
    except VdeployError as e:
        out.add(warning("profile_matcher_failed", e.message, hint=e.hint))
        return None, []
    name = selection.profile.name if selection.profile is not None else None
    return name, list(selection.reasons)
