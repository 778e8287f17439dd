"""What `serve`, `generate` and `bench` check before loading anything: which model the user named (a positional
argument or vLLM's `--model`), whether it is a bundled config that needs `--load-format dummy`, and which of the
given options do nothing here. Notes go to stderr so that stdout stays the command's output."""

from __future__ import annotations

from typing import Any, Optional


def pick_model(argument: Optional[str], option: Optional[str]) -> Optional[str]:
    """MODEL or --model (vLLM's spelling); both is fine when they agree."""
    if argument and option and argument != option:
        from vdeploy.errors import ConfigError

        raise ConfigError(f"two models named: {argument!r} and --model {option!r}", hint="name the model once")
    return argument or option


def preflight(spec: Optional[str], *, load_format: Optional[str], allow_download: bool = False,
              trust_remote_code: bool = False, flags: Optional[dict[str, Any]] = None,
              console: Any = None, local_path: bool = False) -> tuple[Optional[str], Optional[str]]:
    """(the spec for the loader, the name to serve it under when the user typed a hub id for a bundled config).
    local_path: a downloaded hub id becomes its directory (generate, bench and run load paths only)."""
    from vdeploy.cli.model_ref import loadable_spec
    from vdeploy.cli.vllm_compat import TRUST_REMOTE_CODE_NOTE, cpu_only_host
    from vdeploy.engine_settings import no_effect_warnings

    if console is None:
        from vdeploy.cli.output import console as make_console

        console = make_console(stderr=True)
    # only serve has --download; the others load what is on disk
    loader_spec, note = loadable_spec(spec, load_format, allow_download=allow_download, local_path=local_path,
                                      download_flag=not local_path)
    if note:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if trust_remote_code:
        console.print(f"[dim]note: {TRUST_REMOTE_CODE_NOTE}[/]", soft_wrap=True)
    from vdeploy.engine_settings import SETTINGS

    flags = flags or {}
    # the hardware probe costs a moment, so only when some device-specific option was given
    if any(flags.get(s.name) not in (None, False) for s in SETTINGS if s.cpu_no_effect):
        for warning in no_effect_warnings(flags, cpu_only=cpu_only_host()):
            console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    served_as = spec if note and spec != loader_spec else None  # only for a bundled config under its hub id
    return loader_spec, served_as
