"""What a checkpoint says about generating, beyond config.json: the sampling defaults of its generation_config.json
(the server applies them where a request is silent, as vLLM does) and every id that ends a sequence. The EOS ids
are one set for the whole engine: the scheduler stops on them, min_tokens bans them in the workers' sampler, and
grammars and beam search end on them (Llama-3 and Qwen2 instruct checkpoints list end ids in
generation_config.json that config.json lacks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdeploy.checkpoint.paths import read_model_json
from vdeploy.config import ModelConfig
from vdeploy.engine.tokenizer import Tokenizer

_DEFAULT_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass(frozen=True)
class GenerationSettings:
    defaults: dict[str, Any]  # sampling defaults from generation_config.json
    eos_token_ids: tuple[int, ...]  # config.json's, generation_config.json's and the tokenizer's EOS ids


def read_generation_settings(model_dir: Path, model_config: ModelConfig,
                             tokenizer: Tokenizer | None) -> GenerationSettings:
    generation_config = read_model_json(model_dir, "generation_config.json") or {}
    ids = set(model_config.eos_token_ids)
    gen_eos = generation_config.get("eos_token_id")
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    defaults = {k: generation_config[k] for k in _DEFAULT_KEYS if k in generation_config}
    return GenerationSettings(defaults, tuple(sorted(ids)))
