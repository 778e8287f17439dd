"""FP8 Llama checkpoints for the checkpoint tests, packed here from the published formats, independently of vdeploy's
loader:

- DeepSeek-V3 block FP8: every decoder linear `<p>.weight` [out, in] stored as float8_e4m3fn, with
  `<p>.weight_scale_inv` float32 [ceil(out / bo), ceil(in / bi)]: w = q * scale_inv over each bo × bi block (partial
  blocks at the edges included); quantization_config {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme":
  "dynamic", "weight_block_size": [bo, bi]}.
- AutoFP8 / vLLM per-tensor FP8: `<p>.weight` float8_e4m3fn, `<p>.weight_scale` a float32 scalar, and with
  "activation_scheme": "static" an `<p>.input_scale` scalar; quantization_config {"quant_method": "fp8",
  "activation_scheme": ...} and no weight_block_size.

Each packer returns the tensors and the dequantized weight [out, in] they encode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

E4M3_MAX = 448.0
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_llama(*, hidden: int, heads: int, kv_heads: int, head_dim: int, intermediate: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=128, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08)
    return model.float().eval()


def block_fp8_config(block: tuple[int, int]) -> dict:
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": list(block)}


def block_fp8_pack(w: torch.Tensor, block: tuple[int, int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    bo, bi = block
    rows, cols = math.ceil(w.shape[0] / bo), math.ceil(w.shape[1] / bi)
    q = torch.empty(w.shape, dtype=torch.float8_e4m3fn)
    scale_inv = torch.empty(rows, cols, dtype=torch.float32)
    deq = torch.empty(w.shape, dtype=torch.float32)
    for r in range(rows):
        for c in range(cols):
            tile = w[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi].float()
            s = tile.abs().amax().clamp(min=1e-12) / E4M3_MAX
            qt = (tile / s).to(torch.float8_e4m3fn)
            q[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi] = qt
            deq[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi] = qt.float() * s
            scale_inv[r, c] = s
    return {"weight": q, "weight_scale_inv": scale_inv}, deq


def per_tensor_fp8_pack(w: torch.Tensor, static: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    s = (w.abs().amax().clamp(min=1e-12) / E4M3_MAX).float()
    q = (w / s).to(torch.float8_e4m3fn)
    tensors = {"weight": q, "weight_scale": s.reshape(())}
    if static:
        tensors["input_scale"] = torch.tensor(0.02, dtype=torch.float32)
    return tensors, q.float() * s


def write_checkpoint(model, path: Path, quant: dict | None, pack, dtype: torch.dtype = torch.bfloat16) -> Path:
    """model.safetensors + config.json: every decoder linear as `pack(weight)` encodes it, the other tensors in
    `dtype`; `model` keeps the dequantized weights (the reference)."""
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name.endswith(".weight") and name.split(".")[-2] in LINEARS:
                prefix = name[: -len("weight")]
                packed, deq = pack(param)
                tensors.update({prefix + suffix: t.contiguous() for suffix, t in packed.items()})
                param.copy_(deq)
            else:
                tensors[name] = param.detach().to(dtype).clone().contiguous()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.update(architectures=[type(model).__name__], torch_dtype=str(dtype).removeprefix("torch."))
    if quant is not None:
        config["quantization_config"] = quant
    (path / "config.json").write_text(json.dumps(config))
    return path
