"""Ollama's model verbs on vdeploy's own cache: `pull` (download into $VDEPLOY_HOME/models), `ls`/`list` (what is
cached: size, quantization, when) and `show` (one model's summary, from its config alone, so that it also works for
a bundled config before any download). Only typer/stdlib at module level."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def pull(
    model: Annotated[str, typer.Argument(help="Hub id (org/name), or a bundled name such as deepseek-r1.")],
    source: Annotated[Optional[str], typer.Option(
        "--source", "-s", help="modelscope | huggingface (default as for `vdeploy download`).")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", "-r", help="Branch, tag or commit.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (docs/download.md).")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download a model into the local cache (`vdeploy download` with its defaults: resumable, verified)."""
    from vdeploy.cli.download import download
    from vdeploy.model_configs.hub import bundled_name, hub_id

    name = bundled_name(model)
    model_id = hub_id(name) if name and "/" not in model else model  # `pull deepseek-r1` means its hub id
    download(model_id=model_id, source=source, revision=revision, local_dir=None, include=None, exclude=None,
             workers=8, token=None, endpoint=None, link=False, verify=None, json_output=json_output, quiet=quiet)


@dataclass
class CachedModel:
    name: str  # org/name, or "demo"
    path: str
    size_bytes: int
    quantization: str  # fp8, ... or the weights' dtype when unquantized
    modified: float  # when the download last finished or changed (epoch seconds)
    complete: bool


def _quantization(directory: Path) -> str:
    from vdeploy.checkpoint.paths import read_model_json
    from vdeploy.errors import VdeployError

    try:
        config = read_model_json(directory, "config.json") or {}
    except VdeployError:
        return "?"
    quant = config.get("quantization_config") or {}
    if quant.get("quant_method"):
        return str(quant["quant_method"])
    return str(config.get("torch_dtype") or config.get("dtype") or "?")


def _describe(name: str, directory: Path) -> CachedModel:
    from vdeploy.download.manifest import MANIFEST_NAME, load_manifest

    manifest = load_manifest(directory)
    marker = directory / MANIFEST_NAME
    modified = (marker if marker.is_file() else directory).stat().st_mtime
    complete = manifest.complete if manifest is not None else (directory / "config.json").is_file()
    return CachedModel(name, str(directory), _tree_bytes(directory), _quantization(directory), modified, complete)


def _tree_bytes(directory: Path) -> int:
    """Bytes of the files under `directory` (our manifest and lock aside). A download running now renames and deletes
    files and folders meanwhile: os.walk skips a folder that vanished, and a file gone before its stat counts 0."""
    import os
    import stat

    total = 0
    for folder, _, names in os.walk(directory):
        for name in names:
            if name.startswith(".vdeploy"):
                continue
            try:
                info = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def cached_models() -> list[CachedModel]:
    """Every model directory under $VDEPLOY_HOME/models (org/name), then the demo model if converted."""
    from vdeploy.download.paths import model_store
    from vdeploy.models.demo import demo_model_dir, is_demo_model_ready

    store = model_store()
    found = [_describe(f"{d.parent.name}/{d.name}", d) for d in sorted(store.glob("*/*")) if d.is_dir()]
    demo = demo_model_dir()
    if is_demo_model_ready(demo):
        found.append(_describe("demo", demo))
    return found


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def list_models(json_output: JsonOption = False) -> None:
    """List the models in the local cache (`vdeploy list` too): name, size, quantization, when downloaded."""
    models = cached_models()
    if json_output:
        from vdeploy.cli.output import print_json

        print_json({"schema_version": 1, "models": [asdict(m) for m in models]})
        return
    from rich.table import Table

    from vdeploy.cli.output import console

    out = console()
    if not models:
        out.print("no models cached yet: `vdeploy pull ORG/NAME` (bundled configs run without weights: "
                  "`vdeploy serve deepseek-r1 --load-format dummy`)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "SIZE", "QUANTIZATION", "MODIFIED", "STATUS"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    now = time.time()
    for m in models:
        table.add_row(m.name, f"{m.size_bytes / 1e9:.1f} GB", m.quantization, _ago(now - m.modified),
                      "ready" if m.complete else "[yellow]incomplete[/] (pull again to resume)")
    out.print(table)


def show(
    model: Annotated[str, typer.Argument(help="Model directory, downloaded hub id, or bundled config name.")],
    json_output: JsonOption = False,
) -> None:
    """Summarize a model: architecture, parameters, context, quantization, where it comes from."""
    from vdeploy.checkpoint.planner import estimate_params
    from vdeploy.cli.model_ref import resolve_config_ref
    from vdeploy.config import ModelConfig

    ref = resolve_config_ref(model)
    cfg = ModelConfig.from_path(ref.path)
    params = estimate_params(cfg)
    weights = sum(p.stat().st_size for p in Path(ref.path).glob("*.safetensors")) if ref.origin != "bundled" else 0
    summary = {
        "model": model, "source": ref.describe(), "architecture": cfg.architecture, "family": cfg.family,
        "parameters_b": round(params.total / 1e9, 3), "active_parameters_b": round(params.active / 1e9, 3),
        "layers": cfg.num_layers, "hidden_size": cfg.hidden_size, "attention_heads": cfg.num_heads,
        "kv_heads": cfg.num_kv_heads, "context_length": cfg.max_position_embeddings,
        "experts": cfg.n_routed_experts or None, "quantization": cfg.quant.method if cfg.quant else None,
        "dtype": cfg.torch_dtype, "weights_on_disk_gb": round(weights / 1e9, 2) if weights else None,
    }
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(summary)
        return
    from rich.table import Table

    from vdeploy.cli.output import console

    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in summary.items():
        if value is not None:  # parameters_b: 671.026 -> "parameters  671.0B"
            label, text = (key[:-2], f"{value:.1f}B") if key.endswith("_b") else (key, str(value))
            label, text = (label[:-3], f"{text} GB") if label.endswith("_gb") else (label, text)
            table.add_row(f"[bold]{label.replace('_', ' ')}[/]", text)
    console().print(table)
