"""4-bit weight-only linear layers (W4A16) from AWQ and GPTQ checkpoints.

Each method registers the checkpoint's own tensors (layouts: vdeploy.checkpoint.quant_schemes) with the TP tags
of vdeploy.layers.linear, so a rank reads only its slice: column-parallel layers split the output features,
row-parallel ones the input features along whole groups (a TP size that splits a group is refused). After loading,
both formats are repacked into ONE internal layout (vdeploy_kernels.reference_quant: qweight [K/8, N] packed along
K, float zeros [G, N], g_idx [K]) so that a single W4A16 kernel (ops.w4a16_matmul) serves AWQ and GPTQ:
- AWQ packs along the output in its nibble order: unpacked and packed again along K (one pass at load);
- GPTQ's qweight is already packed along K; act-order (desc_act) rows are sorted by group at load, and the
  activations are permuted the same way at run time (x[:, perm] @ W[perm] = x @ W), so the groups the kernel walks
  are contiguous again.
"""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.checkpoint.quant_schemes import AWQ_PACK_ORDER, PackedScheme, packed_scheme
from vdeploy.config import QuantConfig
from vdeploy.errors import ConfigError
from vdeploy.layers import ops
from vdeploy.layers.quantization import LinearMethod
from vdeploy.layers.weight_loading import set_weight_attrs

# checkpoint scales are fp16; kept fp16 (exact), converted to float32 inside the kernel
SCALE_DTYPE = torch.float16


def unpack_int4_columns(packed: torch.Tensor, order: tuple[int, ...] = tuple(range(8))) -> torch.Tensor:
    """[R, N/8] int32 -> [R, N] values 0..15, nibble p of word c holding column 8c + order[p]."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=packed.device)
    nibbles = (packed[..., None] >> shifts) & 0xF  # [R, N/8, 8], by nibble
    column_of_nibble = torch.tensor(order, device=packed.device)
    by_column = torch.empty_like(nibbles)
    by_column[..., column_of_nibble] = nibbles
    return by_column.reshape(packed.shape[0], -1)


REPACK_COLUMNS = 1024  # output columns repacked at a time: bounds the int64 temporaries (~20 bytes per weight)


def repack_by_columns(qweight_out: torch.Tensor, n: int, pack_columns) -> torch.Tensor:
    """Fill qweight_out [K/8, N] column block by column block: pack_columns(start, end) -> [K/8, end - start].
    Unpacking a whole 32B-model projection at once would need several GB of temporaries on the GPU."""
    for start in range(0, n, REPACK_COLUMNS):
        end = min(start + REPACK_COLUMNS, n)
        qweight_out[:, start:end] = pack_columns(start, end)
    return qweight_out


def _param(shape: tuple[int, ...], dtype: torch.dtype, **attrs) -> nn.Parameter:
    p = nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)
    set_weight_attrs(p, **attrs)
    return p


class _Int4LinearMethod(LinearMethod):
    def __init__(self, quant_config: QuantConfig):
        scheme = packed_scheme(quant_config)
        assert scheme is not None
        self.scheme: PackedScheme = scheme

    def _check_partition(self, layer, k_part: int, input_size: int, output_partition_sizes: list[int]) -> None:
        layer.fill_dummy_weights = lambda generator: self.fill_dummy(layer, generator)  # vdeploy.models.loader
        s = self.scheme
        for size in output_partition_sizes:
            if size % s.pack:
                raise ConfigError(f"{s.method}: an output partition of {size} features is not a whole number of "
                                  f"int32 words ({s.pack} values each)", hint="choose a smaller --tp")
        split = k_part != input_size
        if split and s.scales_split_by_input() and k_part % s.group_size:
            raise ConfigError(f"{s.method}: a row-parallel layer with {input_size} input features split "
                              f"{input_size // k_part} ways has {k_part} per rank, not whole groups of "
                              f"{s.group_size}: a rank would need part of another rank's scales",
                              hint="choose a --tp that keeps each rank's input features a multiple of the group "
                              "size (`vdeploy inspect-shards DIR` lists the sizes that work)")
        if k_part % s.pack:
            raise ConfigError(f"{s.method}: {k_part} input features per rank are not a multiple of {s.pack}")

    def _register(self, layer, qweight, zeros, scales, g_idx, group: int, perm: torch.Tensor | None) -> None:
        for name in ("qweight", "qzeros", "scales", "g_idx"):
            if hasattr(layer, name):
                delattr(layer, name)
        layer.register_parameter("qweight", nn.Parameter(qweight.contiguous(), requires_grad=False))  # [K/8, N]
        layer.register_parameter("scales", nn.Parameter(scales.to(SCALE_DTYPE).contiguous(), requires_grad=False))
        layer.register_parameter("zeros", nn.Parameter(zeros.to(SCALE_DTYPE).contiguous(), requires_grad=False))
        layer.register_parameter("g_idx", nn.Parameter(g_idx.to(torch.int32).contiguous(), requires_grad=False))
        layer.register_buffer("int4_perm", perm, persistent=False)
        layer.int4_group = group  # > 0: uniform groups of this many consecutive rows (the kernel's fast path)

    def fill_dummy(self, layer, generator: torch.Generator) -> None:
        """`--load-format dummy`: random 4-bit values and zeros, scales giving weights of std ~0.02 (like the
        unquantized dummy init), a g_idx in group order: the kernels' normal path, not a degenerate one."""
        from vdeploy.models.loader import DUMMY_INIT_STD

        s = self.scheme
        with torch.no_grad():
            for name, p in layer.named_parameters(recurse=False):
                if name == "g_idx":  # the global input row of each of this rank's rows, in group order
                    k = p.shape[0]
                    first = layer.parallel.tp_rank * k if k != layer.input_size else 0
                    rows = torch.arange(first, first + k, device=p.device)
                    p.copy_(rows // s.group_size if s.group_size > 0 else torch.zeros_like(rows))
                elif p.dtype == torch.int32:
                    p.copy_(torch.randint(-2**31, 2**31 - 1, p.shape, generator=generator, device=p.device))
                elif name == "scales":
                    p.fill_(DUMMY_INIT_STD / 6.5)  # q - zero of uniform nibbles has std ~6.5
                else:
                    p.normal_(0.0, DUMMY_INIT_STD, generator=generator)

    def apply(self, layer, x, bias=None):
        x2 = x.reshape(-1, x.shape[-1])  # [T, K]
        if layer.int4_perm is not None:  # act-order: the rows of W were sorted by group at load
            x2 = x2.index_select(1, layer.int4_perm)
        y = ops.w4a16_matmul(x2, layer.qweight, layer.scales, layer.zeros, layer.g_idx, layer.int4_group, bias)
        return y.view(*x.shape[:-1], y.shape[-1])  # [..., N]


class AwqLinearMethod(_Int4LinearMethod):
    """AWQ GEMM layout: qweight [K, N/8], qzeros [K/g, N/8] (AWQ nibble order), scales [K/g, N]."""

    def create_weights(self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size,
                       params_dtype):
        self._check_partition(layer, input_size_per_partition, input_size, output_partition_sizes)
        k, n, g, p = input_size_per_partition, sum(output_partition_sizes), self.scheme.group_size, self.scheme.pack
        # weight_block (out, in): how many elements of the logical [out, in] weight one stored value covers
        layer.register_parameter("qweight", _param((k, n // p), torch.int32, output_dim=1, input_dim=0,
                                                   weight_block=(p, 1)))
        layer.register_parameter("qzeros", _param((k // g, n // p), torch.int32, output_dim=1, input_dim=0,
                                                  weight_block=(p, g)))
        layer.register_parameter("scales", _param((k // g, n), SCALE_DTYPE, output_dim=1, input_dim=0,
                                                  weight_block=(1, g), dummy_fill=0.01))

    def process_weights_after_loading(self, layer):
        from vdeploy_kernels.reference_quant import pack_int4_rows

        src, g, p = layer.qweight.data, self.scheme.group_size, self.scheme.pack
        k, n = src.shape[0], src.shape[1] * p
        qweight = torch.empty(k // 8, n, dtype=torch.int32, device=src.device)  # [K/8, N]
        repack_by_columns(qweight, n, lambda a, b: pack_int4_rows(  # [K, cols] unpacked, packed again along K
            unpack_int4_columns(src[:, a // p: b // p], AWQ_PACK_ORDER)))
        zeros = unpack_int4_columns(layer.qzeros.data, AWQ_PACK_ORDER)  # [K/g, N]
        g_idx = torch.arange(k, device=src.device) // g
        self._register(layer, qweight, zeros, layer.scales.data, g_idx, g, None)


class GptqLinearMethod(_Int4LinearMethod):
    """GPTQ: qweight [K/8, N] (packed along K, already the kernel's layout), qzeros [G, N/8], scales [G, N],
    g_idx [K]. With act-order or one group over the whole input, every rank holds all groups' scales. The projections
    merged into one layer (q/k/v, gate/up) share their input, hence GPTQ's Hessian and act-order permutation: their
    g_idx are equal, and the merged layer keeps one."""

    def create_weights(self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size,
                       params_dtype):
        self._check_partition(layer, input_size_per_partition, input_size, output_partition_sizes)
        s = self.scheme
        k, n, p = input_size_per_partition, sum(output_partition_sizes), s.pack
        split_groups = s.scales_split_by_input()
        groups = s.groups(k) if split_groups else s.groups(input_size)
        in_dim, g = (0, s.group_size) if split_groups else (None, 1)
        layer.register_parameter("qweight", _param((k // p, n), torch.int32, output_dim=1, input_dim=0,
                                                   weight_block=(1, p)))
        layer.register_parameter("qzeros", _param((groups, n // p), torch.int32, output_dim=1, input_dim=in_dim,
                                                  weight_block=(p, g)))
        layer.register_parameter("scales", _param((groups, n), SCALE_DTYPE, output_dim=1, input_dim=in_dim,
                                                  weight_block=(1, g), dummy_fill=0.01))
        layer.register_parameter("g_idx", _param((k,), torch.int32, output_dim=None, input_dim=0))

    def process_weights_after_loading(self, layer):
        from vdeploy_kernels.reference_quant import pack_int4_rows, unpack_int4_rows

        s = self.scheme
        qweight, g_idx = layer.qweight.data, layer.g_idx.data.long()
        k, groups = g_idx.shape[0], layer.scales.shape[0]
        zeros = unpack_int4_columns(layer.qzeros.data) + s.zero_offset  # [G, N]; v1 stores zero - 1
        if s.scales_split_by_input() and k != layer.input_size:  # this rank's groups start at 0 in its scales
            g_idx = g_idx - layer.parallel.tp_rank * (k // s.group_size)
        if k and (int(g_idx.min()) < 0 or int(g_idx.max()) >= groups):
            raise ConfigError(f"gptq: g_idx names groups outside 0..{groups - 1} of this rank's scales"
                              + ("" if s.desc_act else " (config.json says desc_act false: the rows should come in "
                                 "group order)"), hint="use the config.json that came with these weights")
        perm = None
        if s.desc_act:
            order = torch.argsort(g_idx, stable=True)
            if not torch.equal(order, torch.arange(k, device=order.device)):
                perm, g_idx = order, g_idx[order]
                src = qweight
                qweight = repack_by_columns(torch.empty_like(src), src.shape[1], lambda a, b: pack_int4_rows(
                    unpack_int4_rows(src[:, a:b])[order]))
        uniform = s.group_size if s.group_size > 0 and torch.equal(
            g_idx, torch.arange(k, device=g_idx.device) // s.group_size) else 0
        self._register(layer, qweight, zeros, layer.scales.data, g_idx, uniform, perm)
