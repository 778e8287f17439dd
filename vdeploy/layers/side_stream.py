"""Independent work on a second CUDA stream, overlapping the main one: DeepSeek's shared experts run beside the router
and the routed experts (as vLLM's shared-experts stream does), joined just before the kernel that adds them.

At small batches each of those kernels is short and reads its own weights, so neither fills the GPU alone: running
them side by side hides the launch tails of one behind the other. At large batches both are bandwidth- or
compute-bound and the overlap buys nothing, so only steps of at most `max_tokens` tokens fork (vLLM: 256). Works
inside CUDA-graph capture (the side stream forks from and joins the capturing stream, so the graph holds both
branches); on CPU everything runs inline.
"""

from __future__ import annotations

from typing import Callable

import torch

# vLLM's VLLM_SHARED_EXPERTS_STREAM_TOKEN_THRESHOLD: above it the separate stream stopped paying
DEFAULT_MAX_TOKENS = 256


class SideStream:
    """One per model (created lazily on its device); `max_tokens` 0 turns the overlap off."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS):
        self.max_tokens = max_tokens
        self._stream: torch.cuda.Stream | None = None

    def start(self, fn: Callable[[torch.Tensor], torch.Tensor],
              x: torch.Tensor) -> torch.Tensor | Callable[[], torch.Tensor]:
        """fn(x) now (a tensor) when it cannot overlap, else launched on the side stream: returns join(), which makes
        the caller's stream wait for it and returns fn(x). x must stay alive until join() (the caller still holds
        it), and the main stream's work launched before start() is visible to fn."""
        if not x.is_cuda or x.shape[0] > self.max_tokens:
            return fn(x)
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=x.device)
        main, side = torch.cuda.current_stream(x.device), self._stream
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = fn(x)

        def join() -> torch.Tensor:
            main.wait_stream(side)
            return out

        return join
