"""The published config.json of every model the shipped profiles target, read from the configs vdeploy bundles
(vdeploy/model_configs), so the foundation tests need no checkpoint and no hub."""

import json
from pathlib import Path

from vdeploy.model_configs import available, config_path

REFERENCE_CONFIGS = {name: json.loads(config_path(name).read_text()) for name in available()}


def write_reference_model(root: Path, name: str) -> str:
    """A model directory under `root` holding only REFERENCE_CONFIGS[name] as its config.json (all that env check,
    the planner and profile selection read)."""
    path = root / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps(REFERENCE_CONFIGS[name]))
    return str(path)
