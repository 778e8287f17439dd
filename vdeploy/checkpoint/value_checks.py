"""Checks of tensor values that are cheap enough for the weight loader to run on every load: the small tensors whose
corruption silently ruins every output (a NaN in one norm, an Inf or zero FP8 block scale make every logit NaN,
and greedy sampling then emits token id 0 forever).

Block scales and 1-D tensors (norms, biases, the router's correction bias) are a tiny fraction of a checkpoint
(R1: ~0.1 %), so the loader reads them whole, checks them here, then hands the same tensor to the model.
The full scan of every byte is `vdeploy inspect-shards --verify-data` (vdeploy.checkpoint.data_verify).
"""

from __future__ import annotations

import torch

from vdeploy.checkpoint.layout import SCALE_SUFFIX


def checked_on_load(name: str, shape: tuple[int, ...]) -> bool:
    """Whether the loader reads this tensor whole and checks its values."""
    return name.endswith(SCALE_SUFFIX) or len(shape) <= 1


def value_problem(name: str, tensor: torch.Tensor) -> str | None:
    """What is wrong with `tensor`'s values, or None."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    values = tensor.float()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        kinds = "NaN" if bool(torch.isnan(values).any()) else "Inf"
        return f"{bad:,} of {values.numel():,} values are non-finite ({kinds}); every output would be garbage"
    if name.endswith(SCALE_SUFFIX):
        bad = int((values <= 0).sum())
        if bad:
            return f"{bad:,} of {values.numel():,} FP8 block scales are ≤ 0; scales must be positive"
    elif is_norm(name) and not bool(values.any()):
        return "all values are zero: this norm would zero every hidden state"
    return None


def is_norm(name: str) -> bool:
    return name.endswith(("norm.weight", "layernorm.weight", "enorm.weight", "hnorm.weight"))
