"""Hub ids of the bundled configs: `deepseek-ai/DeepSeek-R1` and `deepseek-r1` name the same model, so that every
command accepts what a deployer copies from the model card as well as the short bundled name."""

from __future__ import annotations

from vdeploy.model_configs import available

# The model cards' spelling; the bundled file name is the part after the slash, lower-cased.
HUB_IDS = (
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-V2-Lite",
)


def bundled_name(spec: str | None) -> str | None:
    """The bundled config `spec` names (a bundled name, or an `org/name` hub id, any case), else None."""
    if not spec or spec.count("/") > 1:
        return None
    name = spec.rsplit("/", 1)[-1].lower()
    return name if name in available() else None


def hub_id(name: str) -> str | None:
    """The hub id to download for a bundled name (None for a config with no known hub id)."""
    for model_id in HUB_IDS:
        if model_id.rsplit("/", 1)[-1].lower() == name:
            return model_id
    return None
