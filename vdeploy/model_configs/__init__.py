"""Published configurations of the models vdeploy targets (DeepSeek-R1, its distills, V2-Lite), shipped so that
`--load-format dummy`, the planner and the tests work without a checkpoint or a hub.

config_path("deepseek-r1") -> Path of deepseek-r1.config.json.
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


def _root() -> Path:
    return Path(str(resources.files("vdeploy.model_configs")))
