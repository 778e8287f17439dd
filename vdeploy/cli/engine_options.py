"""Engine options that several commands (serve, generate, bench) take, defined once so that their spelling, help
and environment variable never drift apart. Only typer here (CLI startup stays instant)."""

from __future__ import annotations

from typing import Any

import typer


def step_timeout_option() -> Any:
    """The step watchdog (ParallelConfig.step_timeout_s): multi-rank runs only."""
    return typer.Option(
        "--step-timeout", min=0.0, envvar="VDEPLOY_STEP_TIMEOUT_S", metavar="SECONDS", show_default=False,
        help="With --tp/--pp > 1: a step not finished after this long names the stuck rank and stops every rank "
             "(exit code 1). 0: off. Default 120.")
