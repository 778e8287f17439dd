"""Tensor-parallel linear layers. Each rank holds one partition of the weight; each parameter carries a
`weight_loader(param, loaded_weight, shard_id=None)` that copies this rank's slice of a checkpoint tensor (a torch
tensor or a lazy safetensors slice, so only the slice is read from disk).

Column parallel: the output features are split (W: [out/tp, in]); row parallel: the input features are split
(W: [out, in/tp]) and the partial outputs are summed with an all-reduce. How the weight is stored and multiplied is
the `LinearMethod`'s job (vdeploy.layers.quantization): these classes only know which dimension is split.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vdeploy.config import QuantConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.layers.quantization import get_linear_method
from vdeploy.layers.weight_loading import (
    LoadedWeight,
    WeightShapeError,
    as_lazy,
    block_scaled,
    copy_checked,
    copy_shard_value,
    set_weight_attrs,
)

# (destination offset in this rank's partition, source offset in the checkpoint tensor, length, the checkpoint
# tensor's expected full size along that dimension), in elements
Region = tuple[int, int, int, int]


def divide(numerator: int, denominator: int, what: str) -> int:
    if numerator % denominator:
        raise ConfigError(
            f"{what} ({numerator}) is not divisible by the tensor-parallel size {denominator}",
            hint="choose a --tp that divides the model's heads and hidden sizes",
        )
    return numerator // denominator


def _narrow_both(param: torch.Tensor, dst: torch.Tensor, src, dim_attr: str, region: Region | None):
    """Narrow dst (a view of param's data) and the lazy src along param's `dim_attr` dimension to `region`."""
    dim = getattr(param, dim_attr, None)
    if dim is None or region is None:
        return dst, src
    dst_start, src_start, length, src_total = region
    block_shape = getattr(param, "weight_block", None)
    block = block_shape[0 if dim_attr == "output_dim" else 1] if block_shape else None
    if src.shape[dim] != block_scaled(src_total, block, True):
        raise WeightShapeError(f"expected size {block_scaled(src_total, block, True)} along dimension {dim}, "
                               f"checkpoint tensor has shape {list(src.shape)}")
    d0, s0 = block_scaled(dst_start, block, False), block_scaled(src_start, block, False)
    n = block_scaled(length, block, True)
    if block and (dst_start % block or src_start % block):
        raise WeightShapeError(f"partition offset {src_start} is not a multiple of the quantization block {block}")
    return dst.narrow(dim, d0, n), src.narrow(dim, s0, n)


def load_regions(param: torch.Tensor, loaded: LoadedWeight, out_region: Region | None, in_region: Region | None):
    dst, src = param.data, as_lazy(loaded)
    dst, src = _narrow_both(param, dst, src, "output_dim", out_region)
    dst, src = _narrow_both(param, dst, src, "input_dim", in_region)
    copy_checked(dst, src)


class LinearBase(nn.Module):
    def __init__(
        self,
        input_size: int,
        output_size: int,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        *,
        bias: bool,
        bias_is_split: bool,
        parallel: ParallelState,
        quant_config: QuantConfig | None,
        params_dtype: torch.dtype | None,
    ):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.input_size_per_partition = input_size_per_partition
        self.output_partition_sizes = output_partition_sizes
        self.output_size_per_partition = sum(output_partition_sizes)
        self.parallel = parallel
        self.params_dtype = params_dtype or torch.get_default_dtype()
        self.linear_method = get_linear_method(quant_config)
        self.linear_method.create_weights(
            self, input_size_per_partition, output_partition_sizes, input_size, output_size, self.params_dtype
        )
        if bias:
            size = self.output_size_per_partition if bias_is_split else output_size
            self.bias = nn.Parameter(torch.empty(size, dtype=self.params_dtype), requires_grad=False)
            set_weight_attrs(self.bias, output_dim=0 if bias_is_split else None, input_dim=None)
        else:
            self.register_parameter("bias", None)
        for param in self.parameters(recurse=False):
            set_weight_attrs(param, weight_loader=self.weight_loader)
        self.lora = None  # LoRA adapter slots (vdeploy.lora.layers), attached after loading when LoRA is enabled

    def weight_loader(self, param: torch.Tensor, loaded_weight: LoadedWeight, shard_id: Any = None) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"in={self.input_size_per_partition}/{self.input_size}, "
                f"out={self.output_size_per_partition}/{self.output_size}, tp={self.parallel.tp_size}")


class ReplicatedLinear(LinearBase):
    """The full weight on every rank (small projections, e.g. MLA's kv_a_proj)."""

    def __init__(self, input_size: int, output_size: int, *, bias: bool = False, parallel: ParallelState,
                 quant_config: QuantConfig | None = None, params_dtype: torch.dtype | None = None):
        super().__init__(input_size, output_size, input_size, [output_size], bias=bias, bias_is_split=False,
                         parallel=parallel, quant_config=quant_config, params_dtype=params_dtype)

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is not None:
            raise WeightShapeError(f"replicated linear has no shards, got shard id {shard_id!r}")
        load_regions(param, loaded_weight, None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_method.apply(self, x, self.bias)


class MergedReplicatedLinear(ReplicatedLinear):
    """Several replicated projections of the same input in one matmul (MLA's q_a_proj ‖ kv_a_proj_with_mqa: one
    GEMM launch and one read of x where there were two). Checkpoint tensors load by their index in `output_sizes`."""

    def __init__(self, input_size: int, output_sizes: list[int], *, bias: bool = False, parallel: ParallelState,
                 quant_config: QuantConfig | None = None, params_dtype: torch.dtype | None = None):
        self.output_sizes = list(output_sizes)
        super().__init__(input_size, sum(output_sizes), bias=bias, parallel=parallel, quant_config=quant_config,
                         params_dtype=params_dtype)
        for param in self.parameters(recurse=False):
            set_weight_attrs(param, shard_ids=list(range(len(output_sizes))))

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is None:  # a checkpoint that stores the merged tensor
            load_regions(param, loaded_weight, None, None)
            return
        if not isinstance(shard_id, int) or not 0 <= shard_id < len(self.output_sizes):
            raise WeightShapeError(f"shard id {shard_id!r} out of range for {len(self.output_sizes)} merged outputs")
        if getattr(param, "output_dim", None) is None:
            raise WeightShapeError("a merged replicated linear needs per-output parameters (no per-tensor scales)")
        size = self.output_sizes[shard_id]
        load_regions(param, loaded_weight, (sum(self.output_sizes[:shard_id]), 0, size, size), None)


class ColumnParallelLinear(LinearBase):
    """Output features split across ranks; `gather_output` all-gathers the full output on every rank."""

    def __init__(self, input_size: int, output_size: int, *, bias: bool = False, gather_output: bool = False,
                 parallel: ParallelState, quant_config: QuantConfig | None = None,
                 params_dtype: torch.dtype | None = None, output_sizes: list[int] | None = None):
        output_sizes = output_sizes or [output_size]
        partition_sizes = [divide(size, parallel.tp_size, "output size") for size in output_sizes]
        self.gather_output = gather_output
        super().__init__(input_size, output_size, input_size, partition_sizes, bias=bias, bias_is_split=True,
                         parallel=parallel, quant_config=quant_config, params_dtype=params_dtype)

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is not None:
            raise WeightShapeError(f"column-parallel linear has no shards, got shard id {shard_id!r}")
        part = self.output_size_per_partition
        load_regions(param, loaded_weight, (0, self.parallel.tp_rank * part, part, self.output_size), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_method.apply(self, x, self.bias)  # [T, out/tp]
        if self.lora is not None:
            self.lora.add_delta(y, x)
        return self.parallel.all_gather(y, dim=-1) if self.gather_output else y


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel projections of the same input in one matmul (gate ‖ up). Each checkpoint tensor is
    loaded by its index in `output_sizes` as shard id; each rank keeps its slice of every one of them."""

    def __init__(self, input_size: int, output_sizes: list[int], *, bias: bool = False,
                 gather_output: bool = False, parallel: ParallelState, quant_config: QuantConfig | None = None,
                 params_dtype: torch.dtype | None = None):
        self.output_sizes = list(output_sizes)
        super().__init__(input_size, sum(output_sizes), bias=bias, gather_output=gather_output, parallel=parallel,
                         quant_config=quant_config, params_dtype=params_dtype, output_sizes=output_sizes)
        for param in self.parameters(recurse=False):  # one checkpoint tensor per shard, split or not (GPTQ g_idx)
            set_weight_attrs(param, shard_ids=list(range(len(output_sizes))))

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is None:  # a checkpoint that stores the merged tensor: load every shard from it
            source_offset = 0
            for index, size in enumerate(self.output_sizes):
                self._load_shard(param, loaded_weight, index, source_offset, self.output_size)
                source_offset += size
            return
        if not isinstance(shard_id, int) or not 0 <= shard_id < len(self.output_sizes):
            raise WeightShapeError(f"shard id {shard_id!r} out of range for {len(self.output_sizes)} merged outputs")
        self._load_shard(param, loaded_weight, shard_id, 0, self.output_sizes[shard_id])

    def _load_shard(self, param, loaded_weight, index: int, source_offset: int, source_total: int) -> None:
        if getattr(param, "per_shard_value", False):  # one value per merged projection (per-tensor scales)
            copy_shard_value(param, loaded_weight, index)
            return
        if getattr(param, "output_dim", None) is None:  # e.g. a per-tensor scale
            load_regions(param, loaded_weight, None, None)
            return
        part = self.output_partition_sizes[index]
        dst_offset = sum(self.output_partition_sizes[:index])
        src_offset = source_offset + self.parallel.tp_rank * part
        load_regions(param, loaded_weight, (dst_offset, src_offset, part, source_total), None)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q ‖ k ‖ v projection, split by attention head. With fewer KV heads than ranks, each KV head is
    replicated on tp_size / num_kv_heads consecutive ranks. Shard ids: "q", "k", "v"."""

    def __init__(self, hidden_size: int, head_dim: int, total_num_heads: int, total_num_kv_heads: int, *,
                 bias: bool = False, parallel: ParallelState, quant_config: QuantConfig | None = None,
                 params_dtype: torch.dtype | None = None):
        tp = parallel.tp_size
        self.head_dim = head_dim
        self.total_num_heads, self.total_num_kv_heads = total_num_heads, total_num_kv_heads
        self.num_heads = divide(total_num_heads, tp, "number of attention heads")
        if total_num_kv_heads >= tp:
            self.num_kv_heads = divide(total_num_kv_heads, tp, "number of KV heads")
            self.kv_replicas = 1
        else:
            if tp % total_num_kv_heads:
                raise ConfigError(
                    f"{total_num_kv_heads} KV heads cannot be replicated evenly over tensor-parallel size {tp}",
                    hint="choose a --tp that is a multiple or a divisor of the number of KV heads",
                )
            self.num_kv_heads, self.kv_replicas = 1, tp // total_num_kv_heads
        q_size, kv_size = self.num_heads * head_dim, self.num_kv_heads * head_dim
        # per-rank partition sizes are passed as totals * tp so the parent's division yields them exactly
        super().__init__(hidden_size, (total_num_heads + 2 * total_num_kv_heads) * head_dim, bias=bias,
                         parallel=parallel, quant_config=quant_config, params_dtype=params_dtype,
                         output_sizes=[q_size * tp, kv_size * tp, kv_size * tp])
        self.q_size, self.kv_size = q_size, kv_size
        for param in self.parameters(recurse=False):  # one checkpoint tensor per shard, split or not (GPTQ g_idx)
            set_weight_attrs(param, shard_ids=["q", "k", "v"])

    def _shard_layout(self, shard_id: str) -> tuple[int, int, int, int]:
        """(offset in this rank's partition, offset of this rank's rows in the shard's tensor, size, the shard
        tensor's full size)."""
        rank = self.parallel.tp_rank
        if shard_id == "q":
            return 0, rank * self.q_size, self.q_size, self.total_num_heads * self.head_dim
        kv_rank = rank // self.kv_replicas
        dst = self.q_size if shard_id == "k" else self.q_size + self.kv_size
        return dst, kv_rank * self.kv_size, self.kv_size, self.total_num_kv_heads * self.head_dim

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is None:  # fused qkv in the checkpoint
            total_q = self.total_num_heads * self.head_dim
            total_kv = self.total_num_kv_heads * self.head_dim
            for sid, base in (("q", 0), ("k", total_q), ("v", total_q + total_kv)):
                self._load_shard(param, loaded_weight, sid, base, self.output_size)
            return
        if shard_id not in ("q", "k", "v"):
            raise WeightShapeError(f"QKV shard id must be 'q', 'k' or 'v', got {shard_id!r}")
        self._load_shard(param, loaded_weight, shard_id, 0, None)

    def _load_shard(self, param, loaded_weight, shard_id: str, source_offset: int, fused_total: int | None) -> None:
        if getattr(param, "per_shard_value", False):  # one value per projection (per-tensor scales)
            copy_shard_value(param, loaded_weight, "qkv".index(shard_id))
            return
        if getattr(param, "output_dim", None) is None:
            load_regions(param, loaded_weight, None, None)
            return
        dst, src, size, shard_total = self._shard_layout(shard_id)
        total = fused_total if fused_total is not None else shard_total
        load_regions(param, loaded_weight, (dst, source_offset + src, size, total), None)


class RowParallelLinear(LinearBase):
    """Input features split across ranks; the partial products are all-reduced unless `reduce_results=False`
    (then the caller reduces, e.g. after adding the MoE experts' outputs). The bias is added once (rank 0)."""

    def __init__(self, input_size: int, output_size: int, *, bias: bool = False, input_is_parallel: bool = True,
                 reduce_results: bool = True, parallel: ParallelState, quant_config: QuantConfig | None = None,
                 params_dtype: torch.dtype | None = None):
        self.input_is_parallel, self.reduce_results = input_is_parallel, reduce_results
        in_part = divide(input_size, parallel.tp_size, "input size")
        super().__init__(input_size, output_size, in_part, [output_size], bias=bias, bias_is_split=False,
                         parallel=parallel, quant_config=quant_config, params_dtype=params_dtype)

    def weight_loader(self, param, loaded_weight, shard_id=None):
        if shard_id is not None:
            raise WeightShapeError(f"row-parallel linear has no shards, got shard id {shard_id!r}")
        part = self.input_size_per_partition
        load_regions(param, loaded_weight, None, (0, self.parallel.tp_rank * part, part, self.input_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel and self.parallel.tp_size > 1:
            start, end = self.parallel.shard_range(self.input_size)
            x = x[..., start:end]
        bias = self.bias if self.parallel.tp_rank == 0 else None
        y = self.linear_method.apply(self, x, bias)  # [T, out], partial sum over this rank's inputs
        if self.lora is not None:  # a partial sum too: the same all-reduce completes it
            self.lora.add_delta(y, x)
        return self.parallel.all_reduce(y) if self.reduce_results else y
