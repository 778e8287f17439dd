"""What one token costs in the paged KV cache, for GQA/MHA (separate K and V) and MLA (one latent vector).

Every layer's cache is one tensor of shape [K, num_blocks, block_size, num_kv_heads, head_dim]:
K = 2 (key, value) for standard attention, K = 1 for MLA (latent c_kv ‖ rope key, a single "head" of
kv_lora_rank + qk_rope_head_dim values that is never split across tensor-parallel ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.config import DTYPE_BYTES, ModelConfig


@dataclass(frozen=True)
class KVCacheSpec:
    kind: str  # "mha" | "mla"
    num_layers: int
    block_size: int
    num_kv_heads: int  # per rank (already divided by TP, replicated when fewer heads than ranks)
    head_dim: int
    dtype: str  # "bfloat16" | "float16" | "float32" | "fp8_e4m3"

    @property
    def num_components(self) -> int:
        return 2 if self.kind == "mha" else 1

    @property
    def bytes_per_token_per_layer(self) -> int:
        return self.num_components * self.num_kv_heads * self.head_dim * DTYPE_BYTES[self.dtype]

    @property
    def bytes_per_token(self) -> int:
        return self.num_layers * self.bytes_per_token_per_layer

    @property
    def bytes_per_block(self) -> int:
        return self.block_size * self.bytes_per_token

    def layer_shape(self, num_blocks: int) -> tuple[int, int, int, int, int]:
        return (self.num_components, num_blocks, self.block_size, self.num_kv_heads, self.head_dim)

    @classmethod
    def for_model(cls, cfg: ModelConfig, block_size: int, dtype: str, tp_size: int = 1,
                  num_layers: int | None = None) -> "KVCacheSpec":
        """num_layers: the layers this rank caches (a pipeline stage's share); None -> all of the model's."""
        layers = cfg.num_layers if num_layers is None else num_layers
        if cfg.is_mla:
            return cls("mla", layers, block_size, 1, cfg.kv_cache_dim, dtype)
        kv_heads = max(cfg.num_kv_heads // tp_size, 1)  # replicated when num_kv_heads < tp_size
        return cls("mha", layers, block_size, kv_heads, cfg.head_dim, dtype)
