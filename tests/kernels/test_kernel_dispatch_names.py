"""vdeploy.layers.ops imports `vdeploy_kernels.<module>.<function>` on CUDA only, so CPU CI would never notice a
renamed kernel or a changed signature: check every name and its leading parameters here."""

import importlib
import inspect

import pytest

from vdeploy.layers import ops

DISPATCHED = [
    ("store_kv", "store_kv"),
    ("paged_attention", "paged_attention"),
    ("norms", "rms_norm"),
    ("activation", "silu_and_mul"),
    ("rotary", "rotary"),
]


@pytest.mark.parametrize("module,function", DISPATCHED)
def test_dispatched_kernel_exists_with_the_ops_signature(module, function):
    kernel = getattr(importlib.import_module(f"vdeploy_kernels.{module}"), function)
    op_params = list(inspect.signature(getattr(ops, function)).parameters)
    kernel_params = list(inspect.signature(kernel).parameters)
    assert kernel_params[: len(op_params)] == op_params
    # anything the kernel adds must be optional, so the ops call stays valid
    extra = list(inspect.signature(kernel).parameters.values())[len(op_params):]
    assert all(p.default is not inspect.Parameter.empty for p in extra)
