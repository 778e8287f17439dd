"""`vdeploy profiles list|show|match`: the shipped deployment profiles and which one a model gets.

Only typer/rich/stdlib and the GPU-memory parser (vdeploy.env.hardware, stdlib only until a probe runs) at module
level; profiles, configs and probes are imported inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vdeploy.env.hardware import parse_gpu_memory_gb

app = typer.Typer(no_args_is_help=True, help="Deployment profiles: list, show, and match a model to this machine.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only (schema: docs/profiles.md).")]


def _params_range(p: Any) -> str:
    lo, hi = p.match.min_params_b, p.match.max_params_b
    if lo is None and hi is None:
        return "any size"
    return f"{lo or 0:g}-{hi:g}B" if hi is not None else f">= {lo:g}B"


def _hardware_text(p: Any) -> str:
    if p.is_cpu:
        return "CPU"
    hw = p.hardware
    nodes = f"{hw.nodes}x" if hw.nodes > 1 else ""
    cc = f", sm{hw.min_compute_capability * 10:.0f}+" if hw.min_compute_capability else ""
    return f"{nodes}{hw.gpu_count}x >={hw.min_gpu_memory_gb:g} GB{cc}"


def profile_summary(p: Any) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "architectures": list(p.match.architectures),
        "min_params_b": p.match.min_params_b,
        "max_params_b": p.match.max_params_b,
        "quantization": list(p.match.quantization),
        "gpu_count": p.hardware.gpu_count,
        "nodes": p.hardware.nodes,
        "min_gpu_memory_gb": p.hardware.min_gpu_memory_gb,
        "min_compute_capability": p.hardware.min_compute_capability,
        "tensor_parallel_size": p.engine.tensor_parallel_size,
        "pipeline_parallel_size": p.engine.pipeline_parallel_size,
        "max_model_len": p.engine.max_model_len,
        "source": p.source,
    }


@app.command("list")
def list_profiles(json_output: JsonOption = False) -> None:
    """List the deployment profiles (built-in, plus $VDEPLOY_PROFILES_DIR)."""
    from vdeploy.profiles import load_profiles

    profiles = load_profiles()
    if json_output:
        from vdeploy.cli.output import print_json

        print_json({"profiles": [profile_summary(p) for p in profiles]})
        return
    from rich.table import Table

    from vdeploy.cli.output import console

    table = Table(title="deployment profiles", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("model", "hardware", "TP x PP", "max len"):
        table.add_column(column)
    for p in profiles:
        archs = ", ".join(a.removesuffix("ForCausalLM") for a in p.match.architectures) or "any"
        quant = f", {'/'.join(p.match.quantization)}" if p.match.quantization else ""
        tp, pp = p.engine.tensor_parallel_size or 1, p.engine.pipeline_parallel_size or 1
        table.add_row(p.name, f"{archs} {_params_range(p)}{quant}", _hardware_text(p), f"{tp} x {pp}",
                      str(p.engine.max_model_len or "auto"))
    console().print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name (see `vdeploy profiles list`) or path to a YAML file.")],
    json_output: JsonOption = False,
) -> None:
    """Show one profile: the YAML with the comments that explain its numbers."""
    from vdeploy.config import dataclass_to_dict
    from vdeploy.profiles import get_profile

    profile = get_profile(name)
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(dataclass_to_dict(profile))
        return
    from rich.syntax import Syntax

    from vdeploy.cli.output import console

    out = console()
    text = Path(profile.source).read_text()
    if not out.is_terminal:
        # piped or redirected (`profiles show x > mine.yaml`, the start of a custom profile): the file byte for
        # byte, with no title line and no wrapping or cropping of the comments at the console width
        sys.stdout.write(text)
        return
    out.print(f"[bold]{profile.name}[/] [dim]({profile.source})[/]")
    out.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))


@app.command("match")
def match(
    model: Annotated[str, typer.Argument(
        help="Model directory, its config.json, a downloaded hub id, or a bundled config "
             "(e.g. deepseek-ai/DeepSeek-R1).")],
    explain: Annotated[bool, typer.Option("--explain", help="Say why the winner won and why each other lost.")]
    = False,
    json_output: JsonOption = False,
    gpus: Annotated[
        Optional[int], typer.Option("--gpus", min=0, help="Plan for this many GPUs instead of probing this machine.")
    ] = None,
    gpu_memory_gb: Annotated[float, typer.Option(
        "--gpu-memory-gb", parser=parse_gpu_memory_gb, metavar="GB", help="Memory per GPU (GB) with --gpus.")] = 80.0,
    compute_capability: Annotated[
        str, typer.Option("--compute-capability", help="GPU compute capability with --gpus, e.g. 9.0.")
    ] = "9.0",
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Number of nodes the deployment spans.")] = 1,
) -> None:
    """Pick the best profile for a model on this machine (or on hardware described with --gpus).

    Exit code 0 when a profile matched, 1 when none did (the built-in defaults would apply).
    """
    from vdeploy.config import ModelConfig
    from vdeploy.profiles import select_profile

    from vdeploy.cli.model_ref import resolve_config_ref

    cfg = ModelConfig.from_path(resolve_config_ref(model).path)
    if gpus is not None:
        from vdeploy.env.hardware import cpu_hardware, manual_hardware

        try:
            major, minor = (int(x) for x in compute_capability.split("."))
        except ValueError:
            raise typer.BadParameter(f"{compute_capability!r} is not MAJOR.MINOR (e.g. 9.0)",
                                     param_hint="--compute-capability") from None
        hardware = manual_hardware(gpus, gpu_memory_gb, (major, minor), nodes) if gpus else cpu_hardware()
    else:
        from vdeploy.env.hardware import detect_hardware

        hardware = detect_hardware()
    hardware.nodes = nodes
    selection = select_profile(cfg, hardware, explain=explain)
    result = _match_dict(model, cfg, hardware, selection)
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(result)
    else:
        _print_match(result, explain)
    raise typer.Exit(0 if selection.profile is not None else 1)


def _match_dict(model: str, cfg: Any, hw: Any, selection: Any) -> dict[str, Any]:
    from vdeploy.config import dataclass_to_dict
    from vdeploy.profile_selection import model_quantization

    cc = hw.min_compute_capability
    return {
        "model": model,
        "architecture": cfg.architecture,
        "params_b": round(selection.params_b, 3),
        "quantization": model_quantization(cfg),
        "hardware": {
            "source": hw.source,
            "gpu_count": hw.gpu_count,
            "nodes": hw.nodes,
            "min_gpu_memory_gb": round(hw.min_gpu_memory / 1e9, 1),
            "min_compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        },
        "selected": selection.profile.name if selection.profile else None,
        "engine": ({k: v for k, v in dataclass_to_dict(selection.profile.engine).items() if v is not None}
                   if selection.profile else None),
        "reasons": selection.reasons,
        "rejected": [{"name": name, "why": why} for name, why in selection.rejected],
    }


def _print_match(result: dict[str, Any], explain: bool) -> None:
    from vdeploy.cli.output import console

    out = console()
    hw = result["hardware"]
    machine = "CPU only" if hw["gpu_count"] == 0 else (
        f"{hw['nodes']} node(s) x {hw['gpu_count']} GPU(s), {hw['min_gpu_memory_gb']} GB, "
        f"compute capability {hw['min_compute_capability']}")
    out.print(f"model: {result['architecture']}, {result['params_b']:.1f}B params, "
              f"quantization {result['quantization']}; hardware: {machine}", soft_wrap=True)
    if result["selected"]:
        out.print(f"[bold green]{result['selected']}[/]")
    else:
        out.print("[yellow]no matching profile: built-in defaults apply[/]")
    for reason in result["reasons"]:
        out.print(f"  + {reason}", soft_wrap=True)
    if explain:
        for item in result["rejected"]:
            out.print(f"  [dim]- {item['name']}: {item['why']}[/]", soft_wrap=True)
