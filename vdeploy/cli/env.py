"""`vdeploy env check`: what a deployer runs first on a new server, before torch is installed.

Only typer/rich/stdlib at module level; the probes are imported inside the command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vdeploy.cli.help_format import NarrowSafeCommand
from vdeploy.env.hardware import parse_gpu_memory_gb

app = typer.Typer(no_args_is_help=True, help="Check this machine before deploying (driver, GPUs, torch, NCCL, ...).")

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}


@app.command("check", cls=NarrowSafeCommand)
def check(
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON (schema: docs/env-check.md).")]
    = False,
    model: Annotated[
        Optional[str],
        typer.Option("--model", help="Model directory, config.json, downloaded hub id, or bundled config (e.g. "
                     "deepseek-ai/DeepSeek-R1): add a will-it-fit verdict."),
    ] = None,
    tp: Annotated[
        Optional[int], typer.Option("--tp", "--tensor-parallel-size", min=1,
                                    help="Tensor-parallel size for the fit verdict and GPU checks.")
    ] = None,
    pp: Annotated[
        Optional[int], typer.Option("--pp", "--pipeline-parallel-size", min=1,
                                    help="Pipeline stages for the fit verdict.")
    ] = None,
    gpu_memory: Annotated[
        Optional[float], typer.Option("--gpu-memory", parser=parse_gpu_memory_gb, metavar="GB",
                                      help="Plan the fit for TP x PP GPUs of this many GB (e.g. 141 for H200) "
                                           "instead of this machine.")
    ] = None,
) -> None:
    """Probe the driver, GPUs, interconnect, torch/CUDA, NCCL, /dev/shm and disk; PASS/WARN/FAIL with remedies.

    Exit code 0 when nothing failed, 1 when a check failed. Works without torch installed.
    """
    from vdeploy.env.report import collect_report

    path = None
    if model is not None:
        from vdeploy.cli.model_ref import resolve_config_ref

        path = resolve_config_ref(model).path
    report = collect_report(model=path, tp=tp, pp=pp, gpu_memory_gb=gpu_memory)
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(report.to_dict())
    else:
        _print_table(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_table(report) -> None:
    from rich.table import Table

    from vdeploy.cli.output import console

    table = Table(title=f"vdeploy env check ({report.mode.upper()} mode)", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("details", overflow="fold")
    for c in report.checks:
        details = c.message + (f"\n[dim]→ {c.remedy}[/]" if c.remedy and c.status != "PASS" else "")
        table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", details)
    out = console()
    out.print(table)
    n = report.counts()
    verdict = "[green]ready[/]" if report.ok else "[bold red]not ready[/]"
    out.print(f"{verdict}: {n['pass']} passed, {n['warn']} warning{'' if n['warn'] == 1 else 's'}, {n['fail']} failed")
