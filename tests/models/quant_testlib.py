"""Synthetic AWQ / GPTQ checkpoints for the tests, packed by an implementation written here from the formats'
published layouts (AutoAWQ's GEMM packer, AutoGPTQ's QuantLinear.pack), independent of vdeploy's loader:

- AWQ (version "gemm"): per (group of `group` input rows, output column) min-max asymmetric 4-bit quantization,
  w = (q - zero) * scale. qweight [in, out/8] int32: word c of a row holds columns 8c..8c+7, nibble i (bits 4i) =
  column 8c + [0, 2, 4, 6, 1, 3, 5, 7][i]. qzeros [in/group, out/8] packed the same way. scales [in/group, out] fp16.
- GPTQ: g_idx[k] = group of input row k (act-order: rows quantized in a permuted order, group = position // group).
  qweight [in/8, out] int32: word i of a column holds rows 8i..8i+7, nibble j = row 8i + j. qzeros [groups, out/8]:
  nibble j of word c = column 8c + j, storing zero - 1 in v1 ("gptq") checkpoints, zero in "gptq_v2". scales
  [groups, out] fp16. sym: scale = max|w| / 7.5... rounded GPTQ-style (zero 8); asym: min-max.

- compressed-tensors W8A8 (int-quantized / float-quantized): weight [out, in] int8 (round(w / scale) in -127..127)
  or float8_e4m3 (w / scale), scale = amax / 127 or / 448 per output channel (weight_scale [out, 1]) or per tensor
  ([1]); activations are quantized per token at run time (not stored).

Each packer returns the tensors and the dequantized weight [out, in] the format encodes, from which the reference
model is built.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")


def _words(nibbles: np.ndarray) -> np.ndarray:
    """[..., 8] values 0..15 -> [...] int32, value i in bits 4i."""
    word = np.zeros(nibbles.shape[:-1], dtype=np.uint32)
    for i in range(8):
        word |= nibbles[..., i].astype(np.uint32) << np.uint32(4 * i)
    return word.view(np.int32)


def _minmax(w_groups: torch.Tensor):
    """w_groups [..., rows] -> (scale fp16, zero int) of 4-bit asymmetric min-max quantization over the last dim."""
    wmax = w_groups.amax(-1).clamp(min=0)
    wmin = w_groups.amin(-1).clamp(max=0)
    scale = ((wmax - wmin).clamp(min=1e-5) / 15).half()
    zero = torch.round(-wmin / scale.float()).clamp(0, 15)
    return scale, zero


def awq_pack(w: torch.Tensor, group: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    out_f, in_f = w.shape
    wt = w.t().float()  # [in, out]
    scale, zero = _minmax(wt.reshape(in_f // group, group, out_f).transpose(1, 2))  # [G, out]
    s_rows = scale.float().repeat_interleave(group, 0)  # [in, out]
    z_rows = zero.repeat_interleave(group, 0)
    q = torch.clamp(torch.round(wt / s_rows) + z_rows, 0, 15).to(torch.int64)
    deq = ((q - z_rows) * s_rows).t().contiguous()  # [out, in]

    def pack_cols(values: torch.Tensor) -> torch.Tensor:  # [R, out] -> [R, out/8] in AWQ's order
        v = values.numpy().astype(np.uint32).reshape(values.shape[0], -1, 8)  # [R, out/8, 8] by column
        return torch.from_numpy(_words(v[..., AWQ_ORDER]).copy())

    return {"qweight": pack_cols(q), "qzeros": pack_cols(zero.to(torch.int64)), "scales": scale}, deq


def gptq_pack(w: torch.Tensor, group: int, *, sym: bool, v1: bool, perm: torch.Tensor | None):
    """perm: the act-order quantization order of the input rows (None: natural order)."""
    out_f, in_f = w.shape
    order = perm if perm is not None else torch.arange(in_f)
    g_idx = torch.empty(in_f, dtype=torch.int64)
    g_idx[order] = torch.arange(in_f) // group
    groups = in_f // group
    wt = w.t().float()  # [in, out]
    scale = torch.empty(groups, out_f, dtype=torch.float16)
    zero = torch.empty(groups, out_f)
    for j in range(groups):
        rows = wt[g_idx == j].t()  # [out, group]
        if sym:
            amax = rows.abs().amax(-1).clamp(min=1e-5)
            scale[j] = (2 * amax / 15).half()
            zero[j] = 8.0
        else:
            scale[j], zero[j] = _minmax(rows)
            if v1:  # v1 stores zero - 1 in 4 bits: a zero of 0 is not representable there
                zero[j] = zero[j].clamp(min=1)
    s_rows, z_rows = scale.float()[g_idx], zero[g_idx]  # [in, out]
    q = torch.clamp(torch.round(wt / s_rows) + z_rows, 0, 15).to(torch.int64)
    deq = ((q - z_rows) * s_rows).t().contiguous()
    qweight = torch.from_numpy(_words(q.numpy().reshape(in_f // 8, 8, out_f).transpose(0, 2, 1)).copy())
    stored_zero = (zero - (1 if v1 else 0)).to(torch.int64).numpy().reshape(groups, out_f // 8, 8)
    qzeros = torch.from_numpy(_words(stored_zero).copy())
    return {"qweight": qweight, "qzeros": qzeros, "scales": scale, "g_idx": g_idx.to(torch.int32)}, deq


def tiny_hf_model(family: str, seed: int = 11):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    model = (Qwen2ForCausalLM(Qwen2Config(**kw)) if family == "qwen2" else LlamaForCausalLM(LlamaConfig(**kw)))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08)
    return model.float().eval()


def write_quantized(model, path: Path, quant: dict, pack) -> None:
    """Replace every decoder linear of `model` by its quantized encoding: the packed tensors go to `path`
    (model.safetensors + config.json with `quant` as quantization_config), and `model` keeps the dequantized
    weights (the reference)."""
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, param in model.state_dict().items():
        prefix = name[: -len("weight")]
        if name.endswith(".weight") and any(f".{lin}." in name + "." and name.endswith(f"{lin}.weight")
                                            for lin in LINEARS):
            packed, deq = pack(prefix, param)
            for suffix, t in packed.items():
                tensors[prefix + suffix] = t.contiguous()
            param.copy_(deq)
        else:
            tensors[name] = param.detach().clone().contiguous()
    save_file(tensors, str(path / "model.safetensors"))
    config = model.config.to_dict()
    config.update(architectures=[type(model).__name__], torch_dtype="float32", quantization_config=quant)
    (path / "config.json").write_text(json.dumps(config))


def w8a8_config(kind: str, strategy: str) -> dict:
    args = {"num_bits": 8, "type": kind, "symmetric": True}
    return {"quant_method": "compressed-tensors", "format": f"{kind}-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"],
                                          "weights": {**args, "strategy": strategy, "dynamic": False},
                                          "input_activations": {**args, "strategy": "token", "dynamic": True}}}}


def w8a8_pack(w: torch.Tensor, kind: str, strategy: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    qmax = 127.0 if kind == "int" else 448.0
    amax = w.abs().amax(dim=1, keepdim=True) if strategy == "channel" else w.abs().amax().reshape(1, 1)
    scale = (amax / qmax).float()  # [out, 1] or [1, 1]
    if kind == "int":
        q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
    else:
        q = (w / scale).to(torch.float8_e4m3fn)
    deq = q.float() * scale
    return {"weight": q, "weight_scale": scale if strategy == "channel" else scale.reshape(1)}, deq


def fake_quantize_activations(model, kind: str, tp: int) -> None:
    """Make `model` (transformers, dequantized weights) quantize each decoder linear's input per token like a W8A8
    engine: scale = amax / 127 (int8, rounded half up) or / 448 (e4m3); a row-parallel layer (o_proj, down_proj)
    split over `tp` ranks quantizes each rank's slice of the input with its own scale."""
    qmax = 127.0 if kind == "int" else 448.0

    def quantize(x: torch.Tensor, parts: int) -> torch.Tensor:
        out = []
        for chunk in x.float().chunk(parts, dim=-1):
            s = chunk.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
            v = (chunk / s).clamp(-qmax, qmax)
            v = torch.floor(v + 0.5).clamp(-128, 127) if kind == "int" else v.to(torch.float8_e4m3fn).float()
            out.append(v * s)
        return torch.cat(out, dim=-1).to(x.dtype)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(tuple(LINEARS)):
            parts = tp if name.endswith(("o_proj", "down_proj")) else 1
            module.register_forward_pre_hook(lambda m, args, parts=parts: (quantize(args[0], parts),))


# The prompts every quantized-checkpoint test runs, and how vdeploy's logits for them are read and compared.
PROMPTS = {"a": [1, 2, 3, 4, 5, 6, 7, 9, 30], "b": [200, 201, 17]}


def vdeploy_logits(path, parallel) -> dict[str, torch.Tensor]:
    """One prefill of PROMPTS through vdeploy's loader (fp32, CPU) on this rank."""
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.models.loader import load_model
    from vdeploy.testing.reference_runner import ReferenceRunner

    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, parallel, "cpu", "float32", quiet=True)
    kv_heads = model.model.layers[0].self_attn.attn.num_kv_heads
    runner = ReferenceRunner(model, num_kv_heads=kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=16, block_size=4)
    return runner.step(PROMPTS)


def assert_logits_close(ours, ref, atol: float, rtol: float) -> None:
    """Within tolerance, and the same argmax at every position."""
    for seq_id in PROMPTS:
        torch.testing.assert_close(ours[seq_id], ref[seq_id], atol=atol, rtol=rtol)
        assert torch.equal(ours[seq_id].argmax(-1), ref[seq_id].argmax(-1))
