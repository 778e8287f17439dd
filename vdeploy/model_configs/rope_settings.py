"""rope_theta and rope_scaling of a config.json, completed the way Hugging Face transformers completes them
(`PreTrainedConfig.standardize_rope_params`), so that the rotary tables (vdeploy.layers.rotary) see the values the
checkpoint was trained and published with. Plain data: no torch import."""

from __future__ import annotations

from typing import Any

from vdeploy.model_configs.config_values import count, mapping, positive_number

# schemes whose frequencies depend on the pre-scaling context length (deepseek_yarn: our alias of yarn)
_NEEDS_ORIGINAL_CONTEXT = ("llama3", "yarn", "deepseek_yarn", "longrope")


def rope_settings(cfg: dict[str, Any], source: str, max_position: int) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either the classic keys or transformers 5's `rope_parameters`; the scaling
    dict always carries `rope_type` (older configs say `type`), and is None for plain RoPE. `max_position`: the
    config's max_position_embeddings (its default when absent)."""
    params = dict(mapping(cfg, "rope_parameters", source))
    scaling = dict(mapping(cfg, "rope_scaling", source) or params)
    theta = cfg.get("rope_theta") or params.get("rope_theta") or scaling.get("rope_theta")
    theta = positive_number(theta, 10000.0, source, "rope_theta")
    rope_type = scaling.get("rope_type") or scaling.get("type")
    if not rope_type or rope_type == "default":
        return theta, None
    scaling["rope_type"] = rope_type
    scaling.pop("rope_theta", None)
    if rope_type in _NEEDS_ORIGINAL_CONTEXT:
        # As transformers reads the file: a top-level original_max_position_embeddings (Phi-3 style) wins over the
        # one in rope_scaling, and with neither the model's own context is the pre-scaling one. Without this a
        # file that omits the key (Qwen2's {"type": "yarn", "factor": 4.0}) could not load, and a top-level key
        # would be ignored: other frequencies than the checkpoint's.
        key = "original_max_position_embeddings"
        if cfg.get(key) is not None:
            scaling[key] = count(cfg, source, key)
        elif scaling.get(key) is None:
            scaling[key] = max_position
    return theta, scaling
