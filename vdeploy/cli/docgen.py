"""Write docs/cli.md from the command tree itself: `python -m vdeploy.cli.docgen > docs/cli.md`.

Generated rather than hand-written so the reference cannot drift from `--help`; tests/foundation checks that every
option every command's `--help` shows is in docs/cli.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import typer

HEADER = """# vdeploy command line

Every command and option, generated from the commands themselves (`python -m vdeploy.cli.docgen > docs/cli.md`).
`vdeploy COMMAND --help` prints the same, and a test keeps this file in step with it.

Conventions shared by every command:

- **Exit codes**: `0` success, `1` a check failed (env check found a FAIL, a model does not fit, no profile matched),
  `2` bad usage or unusable input (unknown option, missing file, invalid profile).
- **Errors** the user can act on print one line and a hint, without a traceback; pass `--debug` (or set
  `VDEPLOY_DEBUG=1`) to see the traceback.
- **`--json`**: every reporting command prints only JSON on stdout with it; the schemas are in
  [env-check.md](env-check.md) and [profiles.md](profiles.md) and the other commands' documents.
- **Settings precedence**: built-in defaults < profile < `--config FILE.yaml` < `VDEPLOY_*` environment variables <
  command-line flags (see [profiles.md](profiles.md)).
- **Shell completion**: `vdeploy --install-completion` (bash, zsh, fish, PowerShell); `--show-completion` prints
  the script instead.
"""


def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(command path, click command) for the root and every subcommand, depth first, in registration order."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            yield from walk(sub, (*path, name))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _default(param: Any) -> str:
    default = param.default
    if getattr(param, "is_flag", False):
        return "off" if not default else "on"
    if default is None or param.required or callable(default):
        return "required" if param.required else ""
    if isinstance(default, (list, tuple)):
        return ", ".join(map(str, default))
    return f"`{default}`"


def _type_name(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    try:  # the same type label `--help` shows, e.g. "<int range>"
        return str(param.display_type(ctx)).strip("<>")
    except (AttributeError, TypeError):
        return ""


def _usage(title: str, params: list[Any]) -> str:
    pieces = [title]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for p in params:
        if p.param_type_name == "argument":
            name = p.name.upper()
            pieces.append(name if p.required else f"[{name}]")
    return " ".join(pieces)


def render(app: typer.Typer) -> str:
    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, command in walk(root, ("vdeploy",)):
        parts.append(_section(path, command))
    return "\n".join(parts)


def _section(path: tuple[str, ...], command: Any) -> str:
    title = " ".join(path)
    ctx = command.context_class(command, info_name=path[-1])
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    usage = _usage(title, params) + (" COMMAND [ARGS]..." if getattr(command, "commands", None) else "")
    lines = [f"## `{title}`", "", f"```\n{usage}\n```", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name == "option"]
    if arguments:
        lines += ["| argument | type | description |", "|---|---|---|"]
        for p in arguments:
            lines.append(f"| `{p.name.upper()}` | {_type_name(p, ctx)} | {_cell(getattr(p, 'help', '') or '')} |")
        lines.append("")
    if options:
        lines += ["| option | type | default | description |", "|---|---|---|---|"]
        for p in options:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            lines.append(f"| {names} | {_type_name(p, ctx)} | {_default(p)} | {_cell(p.help or '')} |")
        lines.append("")
    subcommands = getattr(command, "commands", {})
    if subcommands:
        lines += ["| command | description |", "|---|---|"]
        for name, sub in subcommands.items():
            summary = (sub.get_short_help_str(limit=120) if hasattr(sub, "get_short_help_str") else sub.help) or ""
            lines.append(f"| `{title} {name}` | {_cell(summary)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from vdeploy.cli.main import app

    sys.stdout.write(render(app))


if __name__ == "__main__":
    main()
