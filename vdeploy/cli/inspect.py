"""`vdeploy inspect-shards PATH`: architecture, parameters, storage, integrity and a memory plan for a checkpoint,
from its config files and shard headers only (schema of --json: docs/inspect-shards.md).

Exit codes: 0 no integrity errors, 1 integrity errors found, 2 unusable input (not a directory, no weights).
Only typer/stdlib and import-free vdeploy helpers (dtypes, the GPU-memory parser) at module level; the checkpoint
code is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vdeploy.dtypes import byte_sizes
from vdeploy.env.hardware import parse_gpu_memory_gb

# the KV cache's bytes per element by --kv-cache-dtype (auto: a 16-bit cache on the GPUs the planner targets)
KV_DTYPE_BYTES = {"auto": 2, **byte_sizes()}


def inspect_shards(
    path: Annotated[Path, typer.Argument(
        help="Checkpoint directory (config.json + safetensors shards), or a downloaded hub id.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print JSON only (schema: docs/inspect-shards.md).")] = False,
    gpu_memory: Annotated[list[float] | None, typer.Option(
        "--gpu-memory", parser=parse_gpu_memory_gb, metavar="GB",
        help="Memory per GPU in GB to plan for (repeatable). Default: the detected GPUs, "
        "else 80 and 141.")] = None,
    tp: Annotated[list[int] | None, typer.Option(
        "--tp", help="Tensor-parallel size to plan (repeatable). Default: 1, 2, 4, 8 (+ PP 2 if needed).")] = None,
    gpu_memory_utilization: Annotated[float, typer.Option(
        "--gpu-memory-utilization", min=0.05, max=1.0, help="Fraction of each GPU's memory vdeploy may use.")] = 0.9,
    max_model_len: Annotated[int | None, typer.Option(
        "--max-model-len", min=1, help="Context to plan for (default: the model's max_position_embeddings).")] = None,
    kv_cache_dtype: Annotated[str, typer.Option(
        "--kv-cache-dtype", help="KV-cache dtype to plan for: auto (model dtype) | fp8.")] = "auto",
    verify_data: Annotated[bool, typer.Option(
        "--verify-data", help="Also read all tensor data once (at disk speed): NaN/Inf, FP8 scales that are not "
        "finite and positive, all-zero weights; reports GB/s against the raw read speed.")] = False,
    no_fp8_tensor_cores: Annotated[bool, typer.Option(
        "--no-fp8-tensor-cores", help="Plan for GPUs without FP8 tensor cores (e.g. A100): FP8 weights are "
        "dequantized to bf16, doubling them.")] = False,
) -> None:
    """Inspect a checkpoint's shards (headers only, unless --verify-data): architecture, parameters, storage,
    integrity, memory plan and the recommended profile."""
    from vdeploy.checkpoint.inspect import inspect_checkpoint
    from vdeploy.errors import ConfigError

    path = _checkpoint_dir(path)
    if kv_cache_dtype not in KV_DTYPE_BYTES:
        raise ConfigError(f"unknown --kv-cache-dtype {kv_cache_dtype!r}", hint="use auto or fp8")
    hardware = None
    fp8_cores = not no_fp8_tensor_cores
    if not gpu_memory:
        from vdeploy.env.hardware import detect_hardware

        hardware = detect_hardware()
        if hardware.gpus and not no_fp8_tensor_cores:
            fp8_cores = all(g.has_fp8_tensor_cores for g in hardware.gpus)
    report = inspect_checkpoint(path, gpu_memory_gb=gpu_memory or None, tp_sizes=tp or None,
                                gpu_memory_utilization=gpu_memory_utilization, fp8_tensor_cores=fp8_cores,
                                kv_cache_dtype_bytes=KV_DTYPE_BYTES[kv_cache_dtype], max_model_len=max_model_len,
                                hardware=hardware, verify_data=verify_data)
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(report.to_dict())
    else:
        from vdeploy.checkpoint.render import render_report
        from vdeploy.cli.output import console

        render_report(report, console())
    if report.has_errors:
        raise typer.Exit(1)


def _checkpoint_dir(path: Path) -> Path:
    """A downloaded hub id means its directory; a bundled config has no shards to read, so say what does work."""
    if path.exists():
        return path
    from vdeploy.download.paths import resolve_local_model

    local = resolve_local_model(str(path))
    if local is not None:
        return Path(local)
    from vdeploy.model_configs.hub import bundled_name, hub_id

    name = bundled_name(str(path))
    if name is None:
        return path  # inspect_checkpoint's own message
    from vdeploy.errors import ConfigError

    raise ConfigError(
        f"{path}: vdeploy ships only the config of this model, no shards to inspect",
        hint=f"`vdeploy show {path}` summarizes it, `vdeploy env check --model {path} --tp 8 --gpu-memory 141` "
             f"plans its memory, `vdeploy download {hub_id(name) or path}` fetches the shards",
    )
