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


# every MLP (dense, shared and routed experts) gates with SiLU; transformers' ACT2FN also calls it swish
SUPPORTED_HIDDEN_ACTS = ("silu", "swish")


def get_model_class(model_config: ModelConfig) -> type[nn.Module]:
    target = MODEL_CLASSES.get(model_config.family)
    if target is None:
        raise ConfigError(f"no model implementation for family {model_config.family!r}",
                          hint="supported: " + ", ".join(supported_families()))
    # transformers builds the gate activation from hidden_act: serving another one with SiLU would answer with
    # other logits than the checkpoint's, so it is refused before anything is built
    act = model_config.raw.get("hidden_act", "silu")
    if act not in SUPPORTED_HIDDEN_ACTS:
        raise ConfigError(f"hidden_act {act!r} is not supported: vdeploy's MLPs compute SiLU",
                          hint="supported: " + ", ".join(SUPPORTED_HIDDEN_ACTS))
    return pkgutil.resolve_name(target)
