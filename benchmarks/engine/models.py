"""The models the suite runs: bundled published configs (random weights at real shapes, `load_format="dummy"`)
or, with --tiny, small configs of the same families, each written as a config.json into a directory of its own
(the engine, HF transformers and `vdeploy serve` all take a model directory)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdeploy.bench.model_cost import engine_dtype

# benchmark role -> bundled config name (real shapes)
REAL_MODELS = {
    "llama8b": "deepseek-r1-distill-llama-8b",  # the Llama-3.1-8B shape
    "qwen7b": "deepseek-r1-distill-qwen-7b",  # the Qwen2-7B shape
}
# --tiny: the same families, a few MB; big enough context for the tiny workloads
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "llama8b": {"max_position_embeddings": 4096, "vocab_size": 512},
    "qwen7b": {"max_position_embeddings": 4096, "vocab_size": 512, "hidden_size": 96, "num_attention_heads": 6,
               "num_key_value_heads": 2},
}
TINY_FAMILIES = {"llama8b": "llama", "qwen7b": "qwen2"}


@dataclass(frozen=True)
class ModelDir:
    role: str  # "llama8b" | "qwen7b"
    name: str  # bundled config name, or "tiny-<family>"
    path: Path  # directory holding config.json
    tokenizer: bool  # a synthetic tokenizer.json is there (outputs are detokenized)

    def to_dict(self) -> dict[str, str]:
        source = "vdeploy.checkpoint.synthetic.tiny_config" if self.name.startswith("tiny-") else \
            f"vdeploy/model_configs/{self.name}.config.json"
        return {"role": self.role, "name": self.name, "config": source, "weights": "dummy (seeded random)",
                "tokenizer": "synthetic word-level (one word per id)" if self.tokenizer else "none (no detokenization)"}


def write_synthetic_tokenizer(model_dir: Path, vocab_size: int) -> None:
    """A word-level tokenizer.json with one word per token id ("w0" ... "w<V-1>", decoded space-separated), so
    every id a random-weight model samples decodes to text: the engine detokenizes as it would with a real model
    (as vLLM does in its benchmarks) and the server streams text that the serving benchmark can time."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(model_dir / "tokenizer.json"))
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))


def prepare_model_dir(role: str, root: Path, *, tiny: bool, tokenizer: bool = True) -> ModelDir:
    """Write the role's config.json (and a synthetic tokenizer) under root/<name>/ and return the directory."""
    if tiny:
        from vdeploy.checkpoint.synthetic import tiny_config

        family = TINY_FAMILIES[role]
        config = tiny_config(family, dtype="bfloat16", overrides=TINY_OVERRIDES[role])
        name = f"tiny-{family}"
    else:
        from vdeploy.model_configs import config_path

        name = REAL_MODELS[role]
        config = json.loads(config_path(name).read_text())
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer:
        write_synthetic_tokenizer(target, int(config["vocab_size"]))
    return ModelDir(role, name, target, tokenizer)


def engine_settings(llm: Any) -> dict[str, Any]:
    """The settings a result depends on, as the engine resolved them."""
    cfg = llm.engine_config
    runner = getattr(llm.core.executor, "runner", None)
    stats = llm.core.stats()
    return {
        "dtype": engine_dtype(llm),
        "device": str(getattr(runner, "device", cfg.device)),
        "block_size": cfg.cache.block_size,
        "max_num_seqs": cfg.scheduler.max_num_seqs,
        "max_num_batched_tokens": cfg.scheduler.max_num_batched_tokens,
        "max_model_len": llm.max_model_len,
        "enable_prefix_caching": cfg.cache.enable_prefix_caching,
        "enable_chunked_prefill": cfg.scheduler.enable_chunked_prefill,
        "gpu_memory_utilization": cfg.cache.gpu_memory_utilization,
        "num_kv_blocks": stats.num_total_blocks,
        "enforce_eager": cfg.enforce_eager,
        # what actually runs: graphs are captured only on CUDA, and capture may fall back to eager
        "cuda_graphs": None if runner is None else getattr(runner, "graphs", None) is not None,  # None: other process
        "tensor_parallel_size": cfg.parallel.tensor_parallel_size,
        "load_format": cfg.load_format,
    }
