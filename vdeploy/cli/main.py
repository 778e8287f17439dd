"""The `vdeploy` command. Only typer and rich are imported here; each command imports torch and the engine
inside its own body, so `vdeploy --help` stays instant."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from vdeploy import __version__
from vdeploy.cli.command_hints import HintingGroup
from vdeploy.cli.help_format import NarrowSafeCommand
from vdeploy.cli import (bench, chat, download, env, generate, inspect, local_models, profiles, serve, servers,
                         worker_host)

app = typer.Typer(
    name="vdeploy",
    cls=HintingGroup,  # an unknown command gets "did you mean ..."
    help="From a bare GPU server to an OpenAI-compatible DeepSeek endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vdeploy {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for known errors.")] = False,
) -> None:
    if debug:
        os.environ["VDEPLOY_DEBUG"] = "1"


app.add_typer(env.app, name="env")
app.add_typer(profiles.app, name="profiles")
app.command("inspect-shards", cls=NarrowSafeCommand)(inspect.inspect_shards)
app.command("download")(download.download)
# the commands with many long options: plain click help below 130 columns, so that no option name is cut
app.command("serve", cls=NarrowSafeCommand)(serve.serve)
app.command("generate", cls=NarrowSafeCommand)(generate.generate)
app.command("bench", cls=NarrowSafeCommand)(bench.bench)
app.command("worker-host", cls=NarrowSafeCommand)(worker_host.worker_host)
# Ollama's verbs
app.command("pull")(local_models.pull)
app.command("ls")(local_models.list_models)
app.command("list", hidden=True)(local_models.list_models)  # Ollama's long spelling; `ls` is the documented one
app.command("show")(local_models.show)
app.command("ps")(servers.ps)
app.command("stop")(servers.stop)
app.command("run")(chat.run)


def run() -> None:
    """Console-script entry. Click's standalone mode prints usage errors (exit 2) and exits with each command's code;
    known errors (VdeployError) become one line plus a hint and their documented exit code."""
    from vdeploy.errors import VdeployError

    try:
        app(prog_name="vdeploy")
    except VdeployError as e:
        if os.environ.get("VDEPLOY_DEBUG") == "1":
            raise
        from vdeploy.cli.output import print_error

        print_error(e.message, e.hint)
        sys.exit(e.exit_code)
