"""Shared test setup. Kernel tests run Triton in interpreter mode on CPU: the variable must be set before any
kernel module is imported, so it is set here, first."""

import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def interpreter_bf16_dot(monkeypatch):
    """The interpreter multiplies bf16 tl.dot operands as their raw uint16 bits (np.matmul on its storage), so a bf16
    tensor-core kernel gives garbage on CPU. For the tests that ask for it: widen bf16 operands to fp32 first (exact),
    then multiply in fp32 as the tensor cores accumulate bf16 products. Skips if the interpreter stores bf16 otherwise."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if not hasattr(builder, "create_dot"):
        pytest.skip("this Triton's interpreter has no create_dot to patch")
    original = builder.create_dot

    def widen(handle):
        if handle.dtype != tl.bfloat16 or handle.data.dtype != np.uint16:
            return handle
        return interpreter.TensorHandle((handle.data.astype(np.uint32) << 16).view(np.float32), tl.float32)

    def create_dot(self, a, b, d, *args):
        return original(self, widen(a), widen(b), d, *args)

    monkeypatch.setattr(builder, "create_dot", create_dot)
