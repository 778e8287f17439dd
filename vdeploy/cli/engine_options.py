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


def config_file_option() -> Any:
    return typer.Option(
        "--config", exists=True, dir_okay=False, metavar="FILE.yaml",
        help="Engine settings from a YAML file (keys as the options, e.g. max-model-len: 32k). Precedence: "
             "options > VDEPLOY_* > this file > profile (serve) > defaults.")


def merge_config_file(ctx: typer.Context, config: Any, options: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Engine settings for commands without the profile resolver (generate, bench): `options` maps a command's
    parameter name to (registry setting, value). The documented precedence holds here as in serve: an option given
    on the command line wins over VDEPLOY_<NAME>, which wins over the --config file, which wins over the command's
    own default, as vLLM orders them."""
    import os

    values = {setting: value for setting, value in options.values()}
    layered: dict[str, Any] = {}
    if config is not None:
        from vdeploy.config_file import load_config_file

        layered.update(load_config_file(config))
    from vdeploy.profiles import environment_values

    # over the file, each value checked (errors name the variable); only the command's own registry options: the
    # variable stands in for the option, and settings a command takes through other options (LoRA, speculative)
    # are merged by the command itself
    layered.update(environment_values(os.environ, names=values))
    # by name: typer may bring its own copy of click, whose ParameterSource is another enum than click's
    given = {setting for param, (setting, _) in options.items()
             if getattr(ctx.get_parameter_source(param), "name", "DEFAULT") != "DEFAULT"}
    values.update({k: v for k, v in layered.items() if k not in given})
    return values


def with_command_flags(settings: dict[str, Any], speculative_config: str | None, lora_modules: list[str] | None,
                       max_loras: int | None, max_lora_rank: int | None) -> dict[str, Any]:
    """Engine settings (merge_config_file's) with those of --speculative-config and the LoRA options laid over them:
    one mapping, so a setting that --config or VDEPLOY_* also gives is overridden by the option instead of passed
    twice (generate and bench)."""
    from vdeploy.cli.lora_options import lora_settings
    from vdeploy.cli.vllm_compat import speculative_flags

    merged = dict(settings)
    merged.update({k: v for k, v in speculative_flags(speculative_config).items() if v is not None})
    if lora_modules and max_loras is None and merged.get("max_loras") is None:
        max_loras = len(lora_modules)  # every adapter resident: requests naming any of them never wait for a slot
    merged.update({k: v for k, v in lora_settings(None, lora_modules, max_loras, max_lora_rank).items()
                   if v is not None})
    return merged
