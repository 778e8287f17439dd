"""Prompt logprobs (SamplingParams.prompt_logprobs): how likely the model found each prompt token after the ones
before it, and its top-N there, from a prefill chunk's hidden states (what lm-eval's loglikelihood tasks read
through `echo` + `logprobs`).

The scheduler marks the chunk rows that score a prompt token (ScheduledRequest.prompt_logprob_targets) and never
lets a prefix-cache hit skip one. Logits of those rows are computed a slice at a time, so a chunk of thousands of
prompt tokens never holds [T, V] float32 at once; the head's all-gather makes every tensor rank take part, and the
driver alone reduces them to logprobs. Values are log_softmax of the raw logits, as the sampled tokens' logprobs.
"""

from __future__ import annotations

import numpy as np
import torch

from vdeploy.engine.outputs import ScheduledRequest, TokenLogprobs

ROWS_PER_SLICE = 256  # [256, V] float32 logits at a time: ~155 MB at a 152k vocabulary


def compute_prompt_logprobs(model: torch.nn.Module, hidden: torch.Tensor, requests: list[ScheduledRequest],
                            query_start_loc: np.ndarray, driver: bool) -> dict[str, list[TokenLogprobs]] | None:
    """hidden [T, D] of a step whose requests (in batch order, query_start_loc [B + 1]) may carry prompt logprob
    targets -> on the driver, per such request one TokenLogprobs per target (rank included); None elsewhere or when
    no request asked."""
    jobs = [(req, int(query_start_loc[b])) for b, req in enumerate(requests) if req.prompt_logprob_targets]
    if not jobs:
        return None
    rows = np.concatenate([np.arange(first, first + len(req.prompt_logprob_targets)) for req, first in jobs])
    targets = np.concatenate([np.asarray(req.prompt_logprob_targets, dtype=np.int64) for req, _ in jobs])
    top = max(req.num_prompt_top_logprobs for req, _ in jobs)
    rows_d = torch.from_numpy(rows).to(hidden.device)  # [R]
    targets_d = torch.from_numpy(targets).to(hidden.device)[:, None]  # [R, 1]
    parts = []
    for s in range(0, len(rows), ROWS_PER_SLICE):
        logits = model.compute_logits(hidden[rows_d[s:s + ROWS_PER_SLICE]])  # [r, V]; every tensor rank calls it
        if not driver:
            continue
        logprobs = torch.log_softmax(logits, dim=-1)  # [r, V] float32
        chosen = logprobs.gather(1, targets_d[s:s + ROWS_PER_SLICE])  # [r, 1]
        rank = (logprobs > chosen).sum(dim=1, keepdim=True) + 1  # [r, 1]
        part = [chosen, rank.to(logprobs.dtype)]
        if top:
            values, ids = logprobs.topk(top, dim=-1)  # [r, top]
            part += [values, ids.to(logprobs.dtype)]  # ids < 2^24: exact in float32
        parts.append(torch.cat(part, dim=1))  # [r, 2 + 2 top]
    if not driver:
        return None
    packed = torch.cat(parts).cpu().numpy()  # one copy to the host
    out: dict[str, list[TokenLogprobs]] = {}
    row = 0
    for req, _ in jobs:
        n, k = len(req.prompt_logprob_targets), req.num_prompt_top_logprobs
        entries = []
        for j in range(n):
            values = packed[row + j]
            best = [(int(values[2 + top + i]), float(values[2 + i])) for i in range(k)]
            entries.append(TokenLogprobs(req.prompt_logprob_targets[j], float(values[0]), best, int(values[1])))
        out[req.req_id] = entries
        row += n
    return out
