"""The hardware limits the engine benchmarks are measured against: plain arithmetic, no torch.

Decode is bound by memory bandwidth: each step streams every weight once plus the KV cache of every sequence in
the batch. Prefill is bound by tensor-core throughput: two FLOPs per weight per token in the linear layers plus the
causal attention's QK^T and PV products. The formulas are written out in docs/performance.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


def expected_experts_hit(num_experts: int, picks: int) -> float:
    """Distinct experts `picks` uniform top-k choices hit on average: E·(1 − (1 − 1/E)^picks). Random weights
    route so; trained routers are skewed, which hits fewer."""
    return num_experts * (1 - (1 - 1 / num_experts) ** picks)


@dataclass(frozen=True)
class ModelCost:
    """What one token costs a model, in bytes and FLOPs, from its loaded parameters and its KV-cache layout."""

    param_bytes: int  # every parameter of the loaded model (numel * element_size summed)
    num_params: int
    embedding_params: int  # the input embedding table: a lookup, no FLOPs, one row read per token
    lm_head_params: int  # 0 when tied to the embedding (then the table is read whole by the logits matmul)
    tied_embeddings: bool
    kv_bytes_per_token: int  # all layers, K and V (MLA: latent + rope key)
    num_layers: int
    num_heads: int  # query heads
    head_dim: int  # query/key head dim (MLA: qk_nope + qk_rope)
    v_head_dim: int
    hidden_size: int
    routed_expert_bytes: int = 0  # MoE: every routed expert of every layer (a decode step reads only those hit)
    num_experts: int = 0
    experts_per_token: int = 0
    routed_expert_params: int = 0  # MoE: their parameter count (a token multiplies only its k of the E experts)

    @property
    def bytes_per_param(self) -> float:
        return self.param_bytes / self.num_params if self.num_params else 0.0

    @property
    def decode_weight_bytes_strict(self) -> int:
        """Weight bytes a decode step really reads: the embedding table is not streamed (one row per token),
        unless tied, when the logits matmul reads it whole."""
        if self.tied_embeddings:
            return self.param_bytes
        return self.param_bytes - round(self.embedding_params * self.bytes_per_param)

    def decode_weight_bytes(self, batch: int) -> float:
        """Weight bytes a decode step of `batch` sequences reads. MoE layers stream only the routed experts the
        batch picks (expected_experts_hit of b·k uniform choices)."""
        if not self.num_experts:
            return self.decode_weight_bytes_strict
        hit = expected_experts_hit(self.num_experts, batch * self.experts_per_token) / self.num_experts
        return self.decode_weight_bytes_strict - self.routed_expert_bytes * (1 - hit)

    @property
    def linear_params(self) -> int:
        """Parameters that multiply every prompt token: everything but the embedding lookup and the lm_head (which
        prefill applies to the last token of each prompt only) and, of the routed experts, all but the k of E each
        token is routed to (MoE FLOPs are those of the active parameters)."""
        inactive = 0
        if self.num_experts:
            inactive = round(self.routed_expert_params * (1 - self.experts_per_token / self.num_experts))
        return self.num_params - self.embedding_params - self.lm_head_params - inactive

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decode_weight_bytes_strict"] = self.decode_weight_bytes_strict
        d["linear_params"] = self.linear_params
        return d


def decode_step_bytes(weight_bytes: int, kv_bytes_per_token: int, context_lens: list[int]) -> int:
    """Bytes one decode step must read: every weight once, and each sequence's cached tokens."""
    return weight_bytes + kv_bytes_per_token * sum(context_lens)


def single_stream_decode_bound(weight_bytes: int, kv_bytes_per_token: int, prompt_len: int, output_len: int,
                               bandwidth_bytes_per_s: float) -> float:
    """Tokens/s the memory system allows one sequence over the measured decode phase (the steps that produce
    tokens 2..output_len: the first comes from the prefill). The step producing token i (i >= 2) attends over
    prompt_len + i - 1 cached tokens."""
    if output_len < 2:
        raise ValueError("the decode phase needs output_len >= 2")
    if bandwidth_bytes_per_s <= 0:
        raise ValueError("bandwidth must be positive")
    total = sum(decode_step_bytes(weight_bytes, kv_bytes_per_token, [prompt_len + i - 1])
                for i in range(2, output_len + 1))
    seconds = total / bandwidth_bytes_per_s
    return (output_len - 1) / seconds


def causal_attention_flops(num_layers: int, num_heads: int, head_dim: int, v_head_dim: int,
                           prompt_lens: list[int]) -> int:
    """QK^T and PV of causal self-attention over whole prompts: 2 FLOPs per multiply-add, half of the T x T
    score matrix (the masked half is skipped by a causal kernel): 2 * L * H * (D + Dv) * T^2 / 2 per prompt
    (= 2·2·L·T²·H·D/2 when Dv = D)."""
    return sum(num_layers * num_heads * (head_dim + v_head_dim) * t * t for t in prompt_lens)


def prefill_flops(cost: ModelCost, prompt_lens: list[int]) -> dict[str, int]:
    """FLOPs of prefilling the prompts and sampling one token each: linear layers on every token, the lm_head on
    the last token of each prompt, causal attention."""
    tokens = sum(prompt_lens)
    lm_head = cost.lm_head_params or cost.embedding_params  # tied: the embedding table is the lm_head
    parts = {
        "linear": 2 * cost.linear_params * tokens,
        "lm_head": 2 * lm_head * len(prompt_lens),
        "attention": causal_attention_flops(cost.num_layers, cost.num_heads, cost.head_dim, cost.v_head_dim,
                                            prompt_lens),
    }
    parts["total"] = sum(parts.values())
    return parts


def fraction_of(achieved: float, limit: float) -> float | None:
    return achieved / limit if limit > 0 else None
