"""LoRA on each rank: stacked adapter slots in every target layer, and the step's token -> slot mapping.

`attach_lora(model, ...)` gives each qkv_proj / o_proj / gate_up_proj / down_proj layer a `LoRASlots` (the linear
layer adds its delta: vdeploy.layers.linear). Slots are allocated once at start, [max_loras, ...], so loading an
adapter only writes into them: CUDA graphs captured over these buffers stay valid, and the memory is taken before
the KV cache is sized (the warm-up profile counts it like the weights).

A fused layer holds its projections' adapters side by side: A stacks the sub-projections along the rank ([S·R, in],
sub-projection i in rows i·R … i·R + r) and B is block-diagonal ([out, S·R]), so one shrink and one expand serve
q, k and v (or gate and up) together. Tensor parallel: a column-parallel layer keeps the whole A and its rows of B
(the same rows as its weight, KV-head replication included); a row-parallel layer keeps its columns of A and the
whole B, and its partial delta joins the partial product before the layer's one all-reduce.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from vdeploy.layers import ops
from vdeploy.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from vdeploy.lora.adapter import LoRAAdapter
from vdeploy.models.llama import STACKED_PARAMS

logger = logging.getLogger(__name__)
_FUSED = {entry.checkpoint_name: (entry.param_name, entry.shard_id) for entry in STACKED_PARAMS}
_TARGET_LAYERS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


class LoRABatch:
    """This step's adapter slot of every token, in static device buffers ([max_tokens]) that CUDA graphs read."""

    def __init__(self, max_tokens: int, device: torch.device):
        with torch.device(device):
            self.token_slots = torch.full((max_tokens,), -1, dtype=torch.int32)  # [Tmax]
            self.seg_starts = torch.zeros(max_tokens + 1, dtype=torch.int32)  # [Tmax + 1]
            self.seg_slots = torch.full((max_tokens,), -1, dtype=torch.int32)  # [Tmax]
        self.num_segments = 0
        self.max_run = 0  # the longest run of this step (sizes the kernel's grid; 1 in graphs)
        self.active = False  # False: no token of this step has an adapter, the layers skip the LoRA op

    def set_eager(self, token_slots: np.ndarray) -> None:
        """token_slots [T] int32 for an eager step: runs of equal slots become the kernel's segments."""
        t = token_slots.shape[0]
        self.active = bool((token_slots >= 0).any())
        if not self.active:
            return
        starts = np.flatnonzero(np.diff(token_slots, prepend=np.int32(-2)))  # [S] where a new run begins
        self.num_segments = int(starts.shape[0])
        bounds = np.append(starts, t).astype(np.int32)
        self.max_run = int(np.diff(bounds).max())
        self.token_slots[:t].copy_(torch.from_numpy(token_slots))
        self.seg_starts[: self.num_segments + 1].copy_(torch.from_numpy(bounds))
        self.seg_slots[: self.num_segments].copy_(torch.from_numpy(token_slots[starts]))

    def set_graph(self, token_slots: np.ndarray, bucket: int) -> None:
        """A decode graph's step: one run per token over the whole bucket (its grid was fixed at capture); padding
        tokens have no adapter."""
        slots = np.full(bucket, -1, dtype=np.int32)
        slots[: token_slots.shape[0]] = token_slots
        host = torch.from_numpy(slots)
        self.token_slots[:bucket].copy_(host)
        self.seg_slots[:bucket].copy_(host)
        self.seg_starts[: bucket + 1].copy_(torch.arange(bucket + 1, dtype=torch.int32))
        self.num_segments, self.max_run, self.active = bucket, 1, True

    def views(self, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        s = self.num_segments
        return self.token_slots[:num_tokens], self.seg_starts[: s + 1], self.seg_slots[:s], self.max_run


class LoRASlots(nn.Module):
    """The adapter slots of one linear layer; `sub_ids` name its fused projections (shard ids)."""

    def __init__(self, layer: nn.Module, batch: LoRABatch, max_loras: int, max_rank: int, sub_ids: list,
                 dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.batch, self.max_rank, self.sub_ids = batch, max_rank, sub_ids
        self.row_parallel = isinstance(layer, RowParallelLinear)
        rank_total = len(sub_ids) * max_rank
        with torch.device(device):
            self.register_buffer("lora_a", torch.zeros(max_loras, rank_total, layer.input_size_per_partition,
                                                       dtype=dtype), persistent=False)  # [L, S·R, in/tp?]
            self.register_buffer("lora_b", torch.zeros(max_loras, layer.output_size_per_partition, rank_total,
                                                       dtype=dtype), persistent=False)  # [L, out/tp?, S·R]

    def add_delta(self, y: torch.Tensor, x: torch.Tensor) -> None:
        """y [T, out] += this step's adapters' x [T, in] @ Aᵀ @ Bᵀ (a partial sum on a row-parallel rank)."""
        if self.batch.active:
            ops.add_lora(y, x, self.lora_a, self.lora_b, *self.batch.views(x.shape[0]))


def attach_lora(model: nn.Module, max_loras: int, max_rank: int, max_tokens: int, dtype: torch.dtype,
                device: torch.device) -> tuple[LoRABatch, dict[str, nn.Module]]:
    """Give every target layer of this rank's stage its slots; returns the shared batch and the layers by name."""
    batch = LoRABatch(max_tokens, device)
    layers = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in _TARGET_LAYERS:
            continue
        if isinstance(module, QKVParallelLinear):
            sub_ids = ["q", "k", "v"]
        elif isinstance(module, MergedColumnParallelLinear):
            sub_ids = list(range(len(module.output_sizes)))
        else:
            sub_ids = [None]
        module.lora = LoRASlots(module, batch, max_loras, max_rank, sub_ids, dtype, device)
        layers[name] = module
    nbytes = sum(b.numel() * b.element_size() for m in layers.values() for b in m.lora.buffers())
    logger.info("LoRA: %d slots of rank %d in %d layers, %.1f MiB on this rank", max_loras, max_rank, len(layers),
                nbytes / 2**20)
    return batch, layers


@torch.inference_mode()
def load_adapter(layers: dict[str, nn.Module], slot: int, adapter: LoRAAdapter) -> None:
    """Write `adapter` into `slot` of every layer on this rank (this rank's slices; B scaled), zeroing the rest."""
    from vdeploy.models.shard_reader import SafetensorsShard

    for module in layers.values():
        module.lora.lora_a[slot].zero_()
        module.lora.lora_b[slot].zero_()
    with SafetensorsShard(adapter.weights_file) as shard:
        for pair in adapter.pairs:
            layer_name, sub_id = _FUSED.get(pair.module, (pair.module, None))
            parent = "self_attn" if pair.module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            module = layers.get(f"model.layers.{pair.layer}.{parent}.{layer_name}")
            if module is None:  # a layer of another pipeline stage
                continue
            slots: LoRASlots = module.lora
            r, cols = adapter.rank, slots.sub_ids.index(sub_id) * slots.max_rank
            a_src, b_src = shard.get_slice(pair.a_name), shard.get_slice(pair.b_name)
            a_dst = slots.lora_a[slot, cols:cols + r]  # [r, in/tp?]
            if slots.row_parallel:
                part = module.input_size_per_partition
                start = module.parallel.tp_rank * part
                a_dst.copy_(a_src[:, start:start + part])
                slots.lora_b[slot, :, cols:cols + r].copy_(b_src[:, :].float() * adapter.scaling)
            else:
                a_dst.copy_(a_src[:, :])
                dst, src, size = _column_region(module, sub_id)
                slots.lora_b[slot, dst:dst + size, cols:cols + r].copy_(
                    b_src[src:src + size, :].float() * adapter.scaling)


def _column_region(module: nn.Module, sub_id) -> tuple[int, int, int]:
    """(offset in this rank's output partition, offset in the projection's full output, size) of a sub-projection:
    the rows this rank holds of its weight, hence of its B."""
    if isinstance(module, QKVParallelLinear):
        return module._shard_layout(sub_id)[:3]
    part = module.output_partition_sizes[sub_id]
    return sum(module.output_partition_sizes[:sub_id]), module.parallel.tp_rank * part, part
