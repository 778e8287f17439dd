"""Convert a llama-architecture GGUF file (llama.cpp's format) into a Hugging Face checkpoint directory:
model.safetensors, config.json, generation_config.json, tokenizer.json, tokenizer_config.json.

Weights are dequantized with the `gguf` package. llama.cpp stores q_proj/k_proj rows permuted for its own rotary
layout (each head's two rotary halves interleaved); the inverse permutation restores Hugging Face's layout.
The tokenizer is rebuilt from the GGUF BPE metadata (tokens, merges, token types) as a byte-level BPE
tokenizer.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vdeploy.errors import CheckpointError

# GGUF per-layer tensor name -> Hugging Face name (inside model.layers.{i}.)
LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED = 3, 4


def unpermute_rotary_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation: per head, rows (pair i, half h) -> (half h, pair i)."""
    rows = weight.shape[0]
    head_dim = rows // num_heads
    return (weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _fields(reader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[gguf_name]
    parts = gguf_name.split(".", 2)
    if parts[0] == "blk" and len(parts) == 3 and parts[2] in LAYER_TENSORS:
        return f"model.layers.{parts[1]}.{LAYER_TENSORS[parts[2]]}"
    return None


def _float32_value(value: float) -> float:
    """GGUF stores float32: write its shortest decimal form (1e-05, not 9.999999747378752e-06)."""
    return float(str(np.float32(value)))


def hf_config(meta: dict[str, Any], tie_word_embeddings: bool, dtype: torch.dtype) -> dict[str, Any]:
    arch = meta["general.architecture"]
    if arch != "llama":
        raise CheckpointError(f"GGUF architecture {arch!r} is not supported", hint="only llama GGUFs convert")
    hidden, heads = int(meta["llama.embedding_length"]), int(meta["llama.attention.head_count"])
    vocab = int(meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"]))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": int(meta["llama.feed_forward_length"]),
        "num_hidden_layers": int(meta["llama.block_count"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get("llama.attention.head_count_kv", heads)),
        "head_dim": hidden // heads,
        "max_position_embeddings": int(meta["llama.context_length"]),
        "rms_norm_eps": _float32_value(meta["llama.attention.layer_norm_rms_epsilon"]),
        "rope_theta": _float32_value(meta.get("llama.rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tie_word_embeddings,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def convert_weights(reader, config: dict[str, Any], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from gguf.quants import dequantize

    tensors: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name)
        if name is None:
            raise CheckpointError(f"GGUF tensor {tensor.name} has no Hugging Face counterpart")
        array = dequantize(tensor.data, tensor.tensor_type)  # [rows, cols] float32 (numpy order)
        if name.endswith("q_proj.weight"):
            array = unpermute_rotary_rows(array, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            array = unpermute_rotary_rows(array, config["num_key_value_heads"])
        # np.array copies: the GGUF data is a read-only memory map
        tensors[name] = torch.from_numpy(np.array(array, dtype=np.float32, order="C")).to(dtype)
    return tensors


def build_tokenizer(meta: dict[str, Any]):
    """A byte-level BPE `tokenizers.Tokenizer` from the GGUF's gpt2-style tokenizer metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise CheckpointError(f"GGUF tokenizer {meta.get('tokenizer.ggml.model')!r} is not a byte-level BPE")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    token_types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if meta.get("tokenizer.ggml.pre") in ("smollm", "starcoder", "refact"):
        # these pre-tokenizers split every digit on its own before the GPT-2 regex
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    added = [
        AddedToken(tokens[i], special=token_types[i] == GGUF_TOKEN_CONTROL, normalized=False)
        for i in range(len(tokens))
        if token_types[i] in (GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED)
    ]
    tokenizer.add_tokens(added)
    return tokenizer


def tokenizer_config(meta: dict[str, Any]) -> dict[str, Any]:
    tokens = meta["tokenizer.ggml.tokens"]

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None else None

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "pad_token": token("padding"),
        "unk_token": token("unknown"),
        "model_max_length": int(meta.get("llama.context_length", 2048)),
        "clean_up_tokenization_spaces": False,
    }
    if meta.get("tokenizer.chat_template"):
        config["chat_template"] = meta["tokenizer.chat_template"]
    return config


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write a Hugging Face checkpoint for the llama GGUF at `gguf_path` into `out_dir` (created)."""
    from gguf import GGUFReader
    from safetensors.torch import save_file

    reader = GGUFReader(str(gguf_path))
    meta = _fields(reader)
    tie = not any(t.name == "output.weight" for t in reader.tensors)
    config = hf_config(meta, tie, dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = convert_weights(reader, config, dtype)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
    if meta.get("tokenizer.ggml.padding_token_id") is not None:
        generation["pad_token_id"] = meta["tokenizer.ggml.padding_token_id"]
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    tokenizer = build_tokenizer(meta)
    sample = "Hello world! The capital of France is Paris. 12345 naïve café 🙂\n\tdone"
    if tokenizer.decode(tokenizer.encode(sample).ids) != sample:
        raise CheckpointError(f"{gguf_path.name}: the rebuilt tokenizer does not round-trip text")
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(meta), indent=2) + "\n")
