"""vdeploy.layers.ops imports `vdeploy_kernels.<module>.<function>` on CUDA only, so CPU CI would never notice a
renamed kernel or a changed signature: check every name and its leading parameters here."""

import importlib
import inspect

import pytest

from vdeploy.layers import ops

DISPATCHED = [
    ("store_kv", "store_kv"),
    ("rope_store_kv", "rope_store_kv"),
    ("paged_attention", "paged_attention"),
    ("paged_attention", "attention_reads_new_kv"),
    ("norms", "rms_norm"),
    ("activation", "silu_and_mul"),
    ("rotary", "rotary"),
    ("mla_attention", "mla_attention"),
    ("mla_rope_cache", "mla_rope_and_cache"),
    ("moe_routing", "select_experts"),
    ("fused_moe", "fused_moe"),
    ("lora", "add_lora"),
    ("w4a16_gemm", "w4a16_matmul"),
    ("w8a8_gemm", "w8a8_matmul"),
    ("sampling", "gumbel_sample"),
]


@pytest.mark.parametrize("module,function", DISPATCHED)
def test_dispatched_kernel_exists_with_the_ops_signature(module, function):
    kernel = getattr(importlib.import_module(f"vdeploy_kernels.{module}"), function)
    op_signature = inspect.signature(getattr(ops, function)).parameters.values()
    required = [p.name for p in op_signature if p.default is inspect.Parameter.empty]
    optional = [p.name for p in op_signature if p.default is not inspect.Parameter.empty]  # passed by keyword
    kernel_params = list(inspect.signature(kernel).parameters.values())
    assert [p.name for p in kernel_params[: len(required)]] == required
    assert set(optional) <= {p.name for p in kernel_params}
    # anything else the kernel takes must be optional, so the ops call stays valid
    extra = [p for p in kernel_params[len(required):] if p.name not in optional]
    assert all(p.default is not inspect.Parameter.empty for p in extra)
