"""`vdeploy pul` -> "No such command 'pul'. Did you mean 'pull'?": close spellings of the commands, and the verbs of
the tools deployers come from (vLLM, Ollama, docker) mapped to ours, instead of a bare "No such command"."""

from __future__ import annotations

from typer.core import TyperGroup
from vdeploy.cli.help_format import NarrowSafeHelp

# another tool's verb -> the vdeploy command that does that job
OTHER_TOOLS = {
    "chat": "run", "start": "serve", "up": "serve", "kill": "stop", "down": "stop", "models": "ls", "images": "ls",
    "info": "show", "inspect": "show (or inspect-shards)", "check": "env check", "doctor": "env check",
    "benchmark": "bench", "complete": "generate", "fetch": "pull",
}


def suggestion(name: str, commands: list[str]) -> str | None:
    if name in OTHER_TOOLS:
        return OTHER_TOOLS[name]
    import difflib

    close = difflib.get_close_matches(name, commands, n=3, cutoff=0.6)
    return " or ".join(close) if close else None


class HintingGroup(NarrowSafeHelp, TyperGroup):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:  # click's UsageError, from the click that typer vendors
            name = args[0] if args else ""
            if not name or name in self.commands or name.startswith("-") or not hasattr(exc, "ctx"):
                raise
            visible = [n for n, c in self.commands.items() if not getattr(c, "hidden", False)]
            hint = suggestion(name, visible)
            if hint is None:
                raise
            raise type(exc)(f"No such command {name!r}. Did you mean: vdeploy {hint}?", ctx=exc.ctx) from None
