"""Published configurations of the models vdeploy targets (DeepSeek-R1, its distills, V2-Lite), shipped so that
`--load-format dummy`, the planner and the tests work without a checkpoint or a hub.

config_path("deepseek-r1") -> Path of deepseek-r1.config.json; dummy_model_dir("deepseek-r1") -> a directory holding
it as config.json (and its generation_config.json), which `--load-format dummy` loads random weights for.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def available() -> list[str]:
    return sorted(p.name.removesuffix(".config.json") for p in _root().glob("*.config.json"))


def config_path(name: str) -> Path:
    path = _root() / f"{name}.config.json"
    if not path.is_file():
        from vdeploy.errors import ConfigError

        raise ConfigError(f"no bundled config named {name!r}", hint="bundled: " + ", ".join(available()))
    return path


def dummy_model_dir(name: str, root: Path | None = None) -> Path:
    """A model directory with just the bundled config (no weights), under $VDEPLOY_HOME/dummy/<name>."""
    import json
    import os

    source = config_path(name)
    home = Path(os.environ.get("VDEPLOY_HOME") or Path.home() / ".cache" / "vdeploy")
    target = (root or home / "dummy") / name
    target.mkdir(parents=True, exist_ok=True)
    config = json.loads(source.read_text())
    config["_name_or_path"] = name  # lets serve pick the reasoning parser from the name, as for a real checkpoint
    (target / "config.json").write_text(json.dumps(config, indent=2))
    generation = source.with_name(f"{name}.generation_config.json")
    if generation.is_file():
        (target / "generation_config.json").write_text(generation.read_text())
    return target


def resolve_dummy_model(spec: str | None, load_format: str | None) -> str | None:
    """`spec` unchanged, except a bundled config name with load_format "dummy", which becomes its directory."""
    if spec and load_format == "dummy" and not Path(spec).exists() and spec in available():
        return str(dummy_model_dir(spec))
    return spec


def _root() -> Path:
    return Path(str(resources.files("vdeploy.model_configs")))
