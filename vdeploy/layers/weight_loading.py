"""Helpers every layer's `weight_loader` uses to copy this rank's slice of a checkpoint tensor into a parameter.

A loaded weight is either a torch.Tensor or a safetensors slice (`safe_open(...).get_slice(name)`), which reads
from disk only the rows/columns it is indexed with; so a rank narrows the slice first and materialises last.
"""

from __future__ import annotations

from typing import Any, Union

import torch

# torch.Tensor, or safetensors' PySafeSlice (get_shape(), [a:b, c:d] indexing)
LoadedWeight = Union[torch.Tensor, Any]


class WeightShapeError(ValueError):
    """A checkpoint tensor does not have the shape the model expects; the loader adds file and tensor name."""


class LazySlice:
    """A rectangular window onto a tensor or safetensors slice; nothing is read until `materialize()`."""

    def __init__(self, source: LoadedWeight, window: tuple[slice, ...] | None = None):
        self.source = source
        full = tuple(source.shape) if isinstance(source, torch.Tensor) else tuple(source.get_shape())
        self._full_shape = full
        self.window = window if window is not None else tuple(slice(0, n) for n in full)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.window)

    def narrow(self, dim: int, start: int, length: int) -> "LazySlice":
        dim = dim % len(self.window)
        if start < 0 or start + length > self.shape[dim]:
            raise WeightShapeError(
                f"cannot take [{start}:{start + length}] of dimension {dim} with size {self.shape[dim]} "
                f"(tensor shape {list(self.shape)})"
            )
        window = list(self.window)
        base = window[dim].start
        window[dim] = slice(base + start, base + start + length)
        return LazySlice(self.source, tuple(window))

    def materialize(self) -> torch.Tensor:
        if not self.window:  # 0-d tensor
            return self.source[...] if not isinstance(self.source, torch.Tensor) else self.source
        return self.source[self.window]


def as_lazy(loaded: LoadedWeight) -> LazySlice:
    return loaded if isinstance(loaded, LazySlice) else LazySlice(loaded)


def copy_checked(dst: torch.Tensor, src: LazySlice | LoadedWeight) -> None:
    """Read `src` (after its shape was checked against `dst`) and copy it into `dst`, converting dtype/device."""
    src = as_lazy(src)
    if tuple(src.shape) != tuple(dst.shape):
        raise WeightShapeError(f"expected shape {list(dst.shape)}, checkpoint slice has {list(src.shape)}")
    with torch.no_grad():
        copy_window_to = getattr(src.source, "copy_window_to", None)  # vdeploy.models.shard_reader slices
        if copy_window_to is not None:
            copy_window_to(src.window, dst)
        else:
            dst.copy_(src.materialize())


def set_weight_attrs(param: torch.Tensor, **attrs: Any) -> None:
    """Attach loading metadata to a parameter (output_dim, input_dim, weight_loader, weight_block, ...)."""
    for key, value in attrs.items():
        setattr(param, key, value)


def copy_shard_value(param: torch.Tensor, loaded_weight: LoadedWeight, index: int) -> None:
    """A per-tensor value of one projection merged into a layer (compressed-tensors' per-tensor weight_scale of
    q_proj, k_proj, ...): the layer keeps one per projection, at `index`."""
    src = as_lazy(loaded_weight).materialize().reshape(-1)
    if src.numel() != 1:
        raise WeightShapeError(f"expected one per-tensor value, checkpoint tensor has shape {list(src.shape)}")
    with torch.no_grad():
        param.data[index: index + 1].copy_(src)


def block_scaled(n: int, block: int | None, round_up: bool) -> int:
    """Convert an element offset/size along a dimension to units of `block` (block-quantized scales)."""
    if not block:
        return n
    return -(-n // block) if round_up else n // block


def default_weight_loader(param: torch.Tensor, loaded_weight: LoadedWeight, shard_id: Any = None) -> None:
    """Whole-tensor copy: replicated parameters (norms, replicated linears, router weights)."""
    if shard_id is not None:
        raise WeightShapeError(f"parameter is not sharded, got shard id {shard_id!r}")
    copy_checked(param.data, loaded_weight)
