"""Gated activations through the dispatched kernel."""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.layers import ops


class SiluAndMul(nn.Module):
    """[T, 2I] = gate ‖ up -> silu(gate) * up [T, I] (SwiGLU MLPs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.silu_and_mul(x)
