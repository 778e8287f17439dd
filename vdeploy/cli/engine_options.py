"""Command-line options of engine settings, built from the one registry (vdeploy.engine_settings), so that serve,
generate and bench spell, document and bound each option the same way. Only typer and the standard library here
(CLI startup stays instant)."""

from __future__ import annotations

from typing import Any

import typer

from vdeploy.cli.vllm_compat import parse_size
from vdeploy.engine_settings import env_var, setting


def engine_option(name: str, *, envvar: bool = False, help: str | None = None) -> Any:
    """The typer option of registry setting `name`. envvar: also read VDEPLOY_<NAME> (for commands that do not go
    through the profile resolver, which reads the environment itself). help: a command's own wording."""
    s = setting(name)
    if not s.flags:
        raise ValueError(f"engine setting {name} has no command-line option")
    text = help or s.help
    kw: dict[str, Any] = {}
    if envvar:
        kw["envvar"] = env_var(name)
    if s.kind is bool:
        return typer.Option(s.boolean_flags, help=text, **kw)
    if s.size:
        return typer.Option(*s.flags, parser=parse_size, metavar="N",
                            help=f"{text} Suffixes: 32k = 32,000, 32K = 32,768.", **kw)
    if s.minimum is not None:
        kw["min"] = s.minimum
    if s.maximum is not None:
        kw["max"] = s.maximum
    return typer.Option(*s.flags, help=text, **kw)
