"""The published config.json of every model the shipped profiles target, read from the configs vdeploy bundles
(vdeploy/model_configs), so the foundation tests need no checkpoint and no hub."""

import json

from vdeploy.model_configs import available, config_path

REFERENCE_CONFIGS = {name: json.loads(config_path(name).read_text()) for name in available()}
