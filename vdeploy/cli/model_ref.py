"""What a model name on the command line means, for the commands that only read its config (env check, profiles
match, show) and for the ones that load it (serve, generate, bench, run).

Order: an existing path, then a finished download of a hub id, then a bundled config (`deepseek-r1` or its hub id
`deepseek-ai/DeepSeek-R1`), so that a real checkpoint always wins over the shipped config of the same name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DUMMY_NOTE = "random weights at the real shapes (--load-format dummy): the output is noise, the speed is real"


@dataclass(frozen=True)
class ModelRef:
    spec: str  # as typed
    path: str  # a directory or a config.json to read
    origin: str  # path | downloaded | bundled
    bundled: str | None = None  # the bundled config name, when origin is bundled

    def describe(self) -> str:
        if self.origin == "bundled":
            return f"{self.spec} (bundled config {self.bundled}, no weights needed)"
        if self.origin == "downloaded":
            return f"{self.spec} (downloaded to {self.path})"
        return self.path


def resolve_config_ref(spec: str) -> ModelRef:
    """A model to read the config of; ConfigError saying what would work when `spec` names nothing."""
    from vdeploy.download.paths import resolve_local_model
    from vdeploy.model_configs import available, config_path
    from vdeploy.model_configs.hub import bundled_name

    if Path(spec).expanduser().exists():
        return ModelRef(spec, str(Path(spec).expanduser()), "path")
    local = resolve_local_model(spec)
    if local is not None:
        return ModelRef(spec, str(local), "downloaded")
    name = bundled_name(spec)
    if name is not None:
        return ModelRef(spec, str(config_path(name)), "bundled", name)
    from vdeploy.errors import ConfigError

    raise ConfigError(
        f"{spec}: not a model directory, a downloaded hub id, or a bundled config",
        hint=f"bundled configs (no download needed): {', '.join(available())}; "
             "other hub ids: `vdeploy download ORG/NAME` first",
    )


def weights_hint(name: str, spec: str, download_flag: bool = False) -> str:
    from vdeploy.model_configs.hub import hub_id

    model_id = hub_id(name) or (spec if "/" in spec else None)
    get = f"get the weights with `vdeploy download {model_id}`" if model_id else "point at a checkpoint directory"
    if model_id and download_flag:  # serve can fetch them itself
        get += " (or add --download to fetch them now)"
    return f"add --load-format dummy for random weights at the real shapes, or {get}"


def loadable_spec(spec: str | None, load_format: str | None, *, allow_download: bool = False,
                  local_path: bool = False, download_flag: bool = False) -> tuple[str | None, str | None]:
    """(what to hand the loader, a note for the operator). A bundled name or its hub id without weights on disk:
    with --load-format dummy the bundled name (the loader makes its directory), else ConfigError saying both ways
    out. local_path: a downloaded hub id becomes its directory (for loaders that take only paths; serve resolves
    hub ids itself). Anything else passes through unchanged, for the loader's own messages."""
    if spec is None or Path(spec).expanduser().exists():
        return spec, None
    from vdeploy.download.paths import resolve_local_model
    from vdeploy.model_configs.hub import bundled_name

    local = resolve_local_model(spec)
    if local is not None:
        return (str(local) if local_path else spec), None
    name = bundled_name(spec)
    if name is None:
        return spec, None
    if load_format == "dummy":
        return name, f"{spec}: bundled config {name}, {DUMMY_NOTE}"
    if allow_download and "/" in spec:
        return spec, None
    from vdeploy.errors import ConfigError

    raise ConfigError(f"{spec} is not downloaded: vdeploy ships only the config of this model, not its weights",
                      hint=weights_hint(name, spec, download_flag))
