"""The device a kernel benchmark runs on: the GPU, or with --tiny the Triton interpreter on the CPU (a smoke test of
the plumbing). Call before any kernel module is imported: the interpreter is chosen when triton.jit runs."""

from __future__ import annotations

import os

import torch


def kernel_device(tiny: bool) -> torch.device:
    if tiny or not torch.cuda.is_available():
        if not tiny:
            raise SystemExit("no CUDA device: run with --tiny (CPU interpreter smoke test)")
        os.environ["TRITON_INTERPRET"] = "1"
    return torch.device("cpu" if tiny else "cuda")
