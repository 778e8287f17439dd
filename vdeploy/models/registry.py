"""Model class by ModelConfig.family. A constant table of "module:Class" strings, imported on first use, so
that importing the registry never imports every model (and nothing is registered at runtime)."""

from __future__ import annotations

import pkgutil

from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.errors import ConfigError

MODEL_CLASSES: dict[str, str] = {
    "llama": "vdeploy.models.llama:LlamaForCausalLM",
    "qwen2": "vdeploy.models.llama:Qwen2ForCausalLM",
    "deepseek_v2": "vdeploy.models.deepseek:DeepseekV2ForCausalLM",
    "deepseek_v3": "vdeploy.models.deepseek:DeepseekV3ForCausalLM",
}


def supported_families() -> list[str]:
    return sorted(MODEL_CLASSES)


def get_model_class(model_config: ModelConfig) -> type[nn.Module]:
    target = MODEL_CLASSES.get(model_config.family)
    if target is None:
        raise ConfigError(f"no model implementation for family {model_config.family!r}",
                          hint="supported: " + ", ".join(supported_families()))
    return pkgutil.resolve_name(target)
