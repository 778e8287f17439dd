"""Tiny DeepSeek-V2/V3 checkpoints written by HF transformers (random weights, real HF format with per-expert
tensors), optionally converted to block FP8 like R1, and a minimal paged-cache driver for our model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext

BLOCK = 16


def tiny_v3_config(**overrides):
    from transformers import DeepseekV3Config

    kw = dict(vocab_size=300, hidden_size=128, intermediate_size=256, moe_intermediate_size=128,
              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
              n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
              kv_lora_rank=64, q_lora_rank=96, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
              max_position_embeddings=1024, routed_scaling_factor=2.5, norm_topk_prob=True,
              rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    kw.update(overrides)
    return DeepseekV3Config(**kw)


def tiny_v2_config(**overrides):
    from transformers import DeepseekV2Config

    kw = dict(vocab_size=300, hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2,
              n_routed_experts=8, num_experts_per_tok=3, n_group=1, topk_group=1, topk_method="greedy",
              first_k_dense_replace=1, kv_lora_rank=64, q_lora_rank=None, qk_nope_head_dim=32,
              qk_rope_head_dim=16, v_head_dim=32, max_position_embeddings=1024, routed_scaling_factor=1.0)
    kw.update(overrides)
    return DeepseekV2Config(**kw)


def save_hf_model(config, path: Path, seed: int = 0):
    """Random-weight HF model saved as safetensors; router bias randomised so it matters."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "e_score_correction_bias" in name:
                p.uniform_(-0.05, 0.05)
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.uniform_(-0.05, 0.05)
    model.save_pretrained(path, safe_serialization=True)
    return model.eval()


def add_mtp_layer(config, path: Path, seed: int = 0, copy_weight: float = 1.0):
    """Append a multi-token-prediction layer to a saved checkpoint under the R1 checkpoint's tensor names
    (`model.layers.{N}.` with N = num_hidden_layers: the decoder layer's usual names, enorm, hnorm, eh_proj,
    shared_head.norm, and copies of embed_tokens and the head as shared_head.head) and set
    num_nextn_predict_layers. The decoder block has HF's initialisation (a layer N of a model one layer deeper).

    Random weights would accept almost no draft; `copy_weight` > 0 steers the module towards repeating the last
    token (eh_proj passes the main hidden state through, so the head sees roughly the main model's own logits),
    which greedy random models often do: some drafts stand and some fall, both paths get exercised.

    Returns the HF model whose layer N is the MTP block (an independent reference for the block)."""
    import copy
    import tempfile

    from safetensors.torch import load_file, save_file

    n, h = config.num_hidden_layers, config.hidden_size
    deeper = copy.deepcopy(config)
    deeper.num_hidden_layers = n + 1
    with tempfile.TemporaryDirectory() as tmp:  # saved, so the experts get the checkpoint's per-expert names
        donor_model = save_hf_model(deeper, Path(tmp), seed=seed + 1000)
        donor = load_file(Path(tmp) / "model.safetensors")
    file = path / "model.safetensors"
    tensors = load_file(file)
    p = f"model.layers.{n}."
    gen = torch.Generator().manual_seed(seed + 2000)
    for name, t in donor.items():
        if name.startswith(p):
            tensors[name] = t
    eh = torch.randn(h, 2 * h, generator=gen) * 0.02
    eh[:, h:] += copy_weight * torch.eye(h)  # [embeds ; hidden] -> hidden: the hidden half passes through
    tensors[p + "eh_proj.weight"] = eh
    for norm in ("enorm", "hnorm", "shared_head.norm"):
        tensors[p + norm + ".weight"] = 1 + 0.05 * torch.randn(h, generator=gen)
    tensors[p + "embed_tokens.weight"] = tensors["model.embed_tokens.weight"].clone()
    tensors[p + "shared_head.head.weight"] = tensors["lm_head.weight"].clone()
    save_file(tensors, file, metadata={"format": "pt"})
    cfg = json.loads((path / "config.json").read_text())
    cfg["num_nextn_predict_layers"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    return donor_model


def convert_to_fp8(path: Path) -> None:
    """Rewrite a saved checkpoint like R1: 2-D projection weights as e4m3 + float32 weight_scale_inv per 128×128
    block; embeddings, norms, router and lm_head stay unquantized."""
    from safetensors.torch import load_file, save_file

    from vdeploy_kernels.reference_deepseek import quantize_weight_block

    file = path / "model.safetensors"
    tensors = load_file(file)
    out = {}
    for name, t in tensors.items():
        # R1 keeps the MTP layer's eh_proj unquantized
        quantize = t.dim() == 2 and (name.endswith("_proj.weight") or name.endswith("_with_mqa.weight")) \
            and not name.endswith("eh_proj.weight")
        if quantize:
            q, s = quantize_weight_block(t)
            out[name], out[name.replace(".weight", ".weight_scale_inv")] = q, s
        else:
            out[name] = t
    save_file(out, file, metadata={"format": "pt"})
    cfg = json.loads((path / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [128, 128]}
    (path / "config.json").write_text(json.dumps(cfg))


def load_ours(path: Path, tp_rank: int = 0, tp_size: int = 1, dtype=torch.float32):
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model

    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(tp_rank, tp_size), "cpu", dtype,
                       quiet=True)
    return model, cfg


class PagedRunner:
    """Drives a model over one request per sequence with a real paged latent cache (blocks scattered)."""

    def __init__(self, model, cfg, num_blocks: int = 64, naive: bool = False):
        self.model, self.cfg, self.naive = model, cfg, naive
        width = cfg.kv_cache_dim
        dtype = next(model.parameters()).dtype if not naive else torch.float32
        self.kv = [torch.zeros(1, num_blocks, BLOCK, 1, width, dtype=torch.float32) for _ in range(cfg.num_layers)]
        gen = torch.Generator().manual_seed(1)
        self.free = torch.randperm(num_blocks, generator=gen).tolist()
        self.tables: dict[int, list[int]] = {}
        del dtype

    def step(self, chunks: list[tuple[int, list[int], int]]):
        """chunks: (seq id, new token ids, start position) -> logits of each chunk's last token [B, V]."""
        ids, pos, slots, qsl, seq_lens, tables = [], [], [], [0], [], []
        for sid, toks, start in chunks:
            table = self.tables.setdefault(sid, [])
            while len(table) * BLOCK < start + len(toks):
                table.append(self.free.pop())
            for i, tok in enumerate(toks):
                p = start + i
                ids.append(tok)
                pos.append(p)
                slots.append(table[p // BLOCK] * BLOCK + p % BLOCK)
            qsl.append(qsl[-1] + len(toks))
            seq_lens.append(start + len(toks))
            tables.append(table)
        width = max(len(t) for t in tables)
        bt = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32)
        meta = AttentionMetadata(
            slot_mapping=torch.tensor(slots), query_start_loc=torch.tensor(qsl, dtype=torch.int32),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32), block_tables=bt,
            max_query_len=max(len(c[1]) for c in chunks), max_seq_len=max(seq_lens),
            num_decodes=_leading_decodes(chunks),
            block_size=BLOCK, query_lens_host=[len(c[1]) for c in chunks], seq_lens_host=seq_lens)
        ctx = ForwardContext(meta, self.kv)
        # the naive runner swaps in forward_naive for its own steps only: a fast runner may share the model
        attns = [layer.self_attn for layer in self.model.model.layers] if self.naive else []
        for attn in attns:
            attn.forward = _naive(attn)
        try:
            with torch.no_grad():
                hidden = self.model(torch.tensor(ids), torch.tensor(pos), ctx)
                last = torch.tensor(qsl[1:]) - 1
                return self.model.compute_logits(hidden[last])
        finally:
            for attn in attns:
                del attn.forward  # back to the class's forward


def _leading_decodes(chunks) -> int:
    """One-token chunks at the front are decodes (absorbed MLA); the rest prefill/extend (expanded MLA)."""
    n = 0
    while n < len(chunks) and len(chunks[n][1]) == 1:
        n += 1
    return n


def _naive(attn):
    return lambda positions, hidden, ctx: attn.forward_naive(positions, hidden, ctx)
