"""Apply the engine host's grammar bitmasks (guided decoding) to one step's logits, on the device.

Each constrained row's `ScheduledRequest.token_bitmask` packs ceil(V / 32) little-endian int32 words, bit t set when
token t is allowed (xgrammar's layout). The rows go to the device in one transfer and disallowed tokens become -inf
before logprobs, greedy argmax or sampling see the logits. xgrammar's `apply_token_bitmask_inplace` does it when
installed (a CPU kernel, a Triton/CUDA one on GPUs: 3x faster than unpacking the bits with torch on the CPU); a plain
torch unpack + masked_fill is the fallback, so a worker never needs xgrammar to serve free requests.
"""

from __future__ import annotations

import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.worker.device import to_device


def has_bitmasks(requests: list[ScheduledRequest]) -> bool:
    return any(r.token_bitmask is not None for r in requests)


def apply_token_bitmasks(logits: torch.Tensor, requests: list[ScheduledRequest]) -> torch.Tensor:
    """logits [N, V] -> a new tensor with each constrained row's disallowed tokens at -inf (free rows unchanged)."""
    vocab = logits.shape[1]
    words = (vocab + 31) // 32
    rows = [i for i, r in enumerate(requests) if r.token_bitmask is not None]
    packed = torch.frombuffer(bytearray(b"".join(requests[i].token_bitmask for i in rows)), dtype=torch.int32)
    packed = packed.view(len(rows), -1)[:, :words]
    packed = to_device(packed, logits.device)
    out = logits.clone()  # the model's logits buffer may be a CUDA-graph output, reused next step
    try:
        import xgrammar as xgr
    except ImportError:
        xgr = None
    if xgr is not None:
        full = torch.full((len(requests), words), -1, dtype=torch.int32, device=logits.device)  # -1: all allowed
        full[to_device(rows, logits.device)] = packed
        xgr.apply_token_bitmask_inplace(out, full, vocab_size=vocab, indices=rows)
        return out
    shifts = torch.arange(32, dtype=torch.int32, device=logits.device)
    allowed = ((packed[:, :, None] >> shifts) & 1).bool().reshape(len(rows), words * 32)[:, :vocab]  # [R, V]
    index = to_device(rows, logits.device)
    out[index] = logits[index].masked_fill(~allowed, float("-inf"))
    return out
