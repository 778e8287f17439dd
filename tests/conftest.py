"""Shared test setup. Kernel tests run Triton in interpreter mode on CPU: the variable must be set before any
kernel module is imported, so it is set here, first."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
