"""DeepSeek mixture-of-experts: routing and the routed experts, split across TP ranks along the intermediate dim.

Each rank holds every expert with I/tp of its intermediate channels, so a token's routed output is a partial sum
that the caller all-reduces once, together with the shared experts' partial sum (one all-reduce per MoE layer).
Expert parallelism (whole experts per rank, all-to-all dispatch) would slot in behind the same forward().
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.layers import ops
from vdeploy.layers.weight_loading import as_lazy, copy_checked


@dataclass(frozen=True)
class RoutingSpec:
    """How a DeepSeek router turns logits into (weights, experts), read once from the config.
    DeepSeek-V3: sigmoid scores; the choice (not the weights) adds e_score_correction_bias; experts come only from
    the `topk_group` groups with the best sum of their top-2 choice scores (group_score "sum_top2", noaux_tc).
    DeepSeek-V2: softmax scores, greedy or group_limited_greedy (group_score "max": a group's best expert)."""

    top_k: int
    sigmoid: bool
    n_group: int = 1
    topk_group: int = 1
    group_score: str | None = None  # "sum_top2" | "max" | None (no group limit)
    renormalize: bool = False
    scaling: float = 1.0

    @classmethod
    def of(cls, cfg: ModelConfig) -> "RoutingSpec":
        grouped = cfg.topk_method in ("noaux_tc", "group_limited_greedy") and cfg.n_group > 1
        return cls(
            top_k=cfg.num_experts_per_tok, sigmoid=cfg.scoring_func == "sigmoid", n_group=cfg.n_group,
            topk_group=cfg.topk_group,
            group_score=("sum_top2" if cfg.topk_method == "noaux_tc" else "max") if grouped else None,
            renormalize=cfg.norm_topk_prob and cfg.family == "deepseek_v3",  # HF's V2 never renormalises
            scaling=float(cfg.routed_scaling_factor),
        )


class RoutedExperts(nn.Module):
    """All routed experts of one layer, this rank's slice: w13 [E, 2·I/tp, H] (gate ‖ up), w2 [E, H, I/tp].
    Block-FP8 checkpoints keep e4m3 weights plus scales [E, ⌈rows/128⌉, ⌈cols/128⌉] when `fp8` is set."""

    def __init__(self, cfg: ModelConfig, parallel: ParallelState, dtype: torch.dtype, fp8: bool):
        super().__init__()
        self.num_experts = cfg.n_routed_experts
        self.hidden = cfg.hidden_size
        self.inter = cfg.moe_intermediate_size // parallel.tp_size
        self.parallel = parallel
        self.fp8 = fp8
        self.block = tuple(cfg.quant.weight_block_size) if (fp8 and cfg.quant) else (128, 128)
        wdtype = torch.float8_e4m3fn if fp8 else dtype
        e, h, i = self.num_experts, self.hidden, self.inter
        self.w13 = nn.Parameter(torch.empty(e, 2 * i, h, dtype=wdtype), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(e, h, i, dtype=wdtype), requires_grad=False)
        if fp8:
            bn, bk = self.block
            self.w13_scale = nn.Parameter(
                torch.empty(e, 2 * (-(-i // bn)), -(-h // bk), dtype=torch.float32), requires_grad=False
            )
            self.w2_scale = nn.Parameter(torch.empty(e, -(-h // bn), -(-i // bk), dtype=torch.float32),
                                         requires_grad=False)
        for name, param in self.named_parameters(recurse=False):
            is_scale = name.endswith("_scale")
            projections = ("down_proj",) if name.startswith("w2") else ("gate_proj", "up_proj")
            param.weight_loader = self._weight_loader
            param.shard_ids = [(expert, proj, is_scale) for expert in range(e) for proj in projections]
            if is_scale:
                param.dummy_fill = 1.0  # random FP8 weights (std 0.02) with unit scales

    def _weight_loader(self, param, loaded, shard_id) -> None:
        expert, proj, is_scale = shard_id
        self.load_expert_weight(loaded, expert, proj, is_scale)

    def load_expert_weight(self, loaded, expert: int, proj: str, is_scale: bool) -> None:
        """Copy this rank's slice of one checkpoint tensor (`mlp.experts.{expert}.{proj}.weight[_scale_inv]`).
        `loaded` is a tensor or a safetensors slice; only the rank's rows/columns are read."""
        rank = self.parallel.tp_rank
        if is_scale:
            bn = self.block[0]
            inter_blocks = -(-self.inter // bn)
            target = self.w2_scale if proj == "down_proj" else self.w13_scale
        else:
            inter_blocks = self.inter
            target = self.w2 if proj == "down_proj" else self.w13
        src = as_lazy(loaded)
        if proj == "down_proj":  # [H, I]: split columns
            copy_checked(target.data[expert], src.narrow(1, rank * inter_blocks, inter_blocks))
        else:  # gate/up [I, H]: split rows; gate fills the first half of w13, up the second
            offset = 0 if proj == "gate_proj" else inter_blocks
            dst = target.data[expert, offset : offset + inter_blocks]
            copy_checked(dst, src.narrow(0, rank * inter_blocks, inter_blocks))

    def fill_dummy_weights(self, generator: torch.Generator) -> None:
        """Random weights for `--load-format dummy`, one expert at a time (a float32 buffer for all experts of an
        R1 layer would need 30 GB); FP8 scales are 1."""
        with torch.no_grad():
            for weight in (self.w13, self.w2):
                noise = torch.empty(weight.shape[1:], dtype=torch.float32, device=weight.device)
                for expert in range(self.num_experts):
                    weight[expert].copy_(noise.normal_(0.0, 0.02, generator=generator))
            if self.fp8:
                self.w13_scale.fill_(1.0)
                self.w2_scale.fill_(1.0)

    def process_weights_after_loading(self, dtype: torch.dtype) -> None:
        """FP8 weights stay FP8 on GPUs with FP8 tensor cores; elsewhere (CPU, A100) they are dequantized once:
        2× the memory, no FP8 arithmetic."""
        from vdeploy.checkpoint.planner import keeps_8bit_weights
        from vdeploy.layers.fp8 import fp8_tensor_cores_available
        from vdeploy_kernels.reference_deepseek import dequantize_weight_block

        device = self.w13.device  # the memory planner counts the experts with the same rule
        if not self.fp8 or keeps_8bit_weights("block-fp8", device.type, fp8_tensor_cores_available(device)):
            return
        self.w13 = nn.Parameter(
            torch.stack([dequantize_weight_block(w, s, self.block, dtype) for w, s in zip(self.w13, self.w13_scale)]),
            requires_grad=False,
        )
        self.w2 = nn.Parameter(
            torch.stack([dequantize_weight_block(w, s, self.block, dtype) for w, s in zip(self.w2, self.w2_scale)]),
            requires_grad=False,
        )
        del self.w13_scale, self.w2_scale
        self.fp8 = False

    def forward(self, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
                shared_output: torch.Tensor | None = None) -> torch.Tensor:
        # x [T, H] -> this rank's partial sum [T, H] (not yet all-reduced). shared_output [T, H]: the shared experts'
        # partial sum, added by the kernel that sums each token's k experts (saves a pass over [T, H])
        return ops.fused_moe(
            x, self.w13, self.w2, topk_ids, topk_weights,
            getattr(self, "w13_scale", None) if self.fp8 else None,
            getattr(self, "w2_scale", None) if self.fp8 else None,
            self.block,
            shared_output=shared_output,
        )
