"""RMSNorm through the dispatched kernel (fused residual add when a residual is passed)."""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.layers import ops
from vdeploy.layers.weight_loading import default_weight_loader, set_weight_attrs


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6, params_dtype: torch.dtype | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden_size, dtype=params_dtype or torch.get_default_dtype()),
                                   requires_grad=False)
        set_weight_attrs(self.weight, weight_loader=default_weight_loader, dummy_fill=1.0)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        # x: [T, D]; with residual: returns (norm(x + residual), x + residual)
        return ops.rms_norm(x, self.weight, self.eps, residual)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
