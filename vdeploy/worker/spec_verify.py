"""Verifying draft tokens in one target forward: exact for greedy, distribution-preserving for sampling.

A request that speculates computes [t0, d1 … dk] in one step; the logits at t0, d1 … d(k-1) judge d1 … dk, the logits
at dk give the bonus token. Greedy: d(i+1) is accepted while it equals the argmax at position i, and the first
mismatch is replaced by that argmax, so the output is token for token what plain greedy decoding gives. Sampling
(drafts are deterministic, q = one-hot): d is accepted with probability p(d); on rejection the token is drawn from p
with d removed and renormalised, i.e. from (p - q)+ — the standard speculative-sampling rule, which leaves the
output distributed exactly as p.
"""

from __future__ import annotations

import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.worker.sampling_tensors import SamplingTensors


def verify_drafts(sampler, logits: torch.Tensor, requests: list[ScheduledRequest],
                  drafts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [S, V'] at the draft-judging positions of the speculating requests, row order = requests expanded
    by their draft count; drafts: each request's draft tokens. Returns (accepted [S] bool, replacement [S] int64)
    on the device: whether each draft stands, and the token to emit instead where it does not."""
    logits = logits[:, : sampler.vocab_size].float()  # [S, V]
    rows = [r for r, d in zip(requests, drafts) for _ in d]
    flat = torch.tensor([t for d in drafts for t in d], dtype=torch.int64, device=logits.device)  # [S]
    st = SamplingTensors.from_requests(rows, sampler.vocab_size, sampler.eos_token_ids, logits.device)
    greedy_pick = logits.argmax(dim=-1)  # [S]
    accepted = greedy_pick == flat
    replacement = greedy_pick
    if not st.all_greedy:
        probs = sampler._sampling_probs(logits, st)  # [S, V]
        p_draft = probs.gather(1, flat[:, None])[:, 0]  # [S]
        u = torch.rand(p_draft.shape, generator=sampler.generator, device=logits.device)
        residual = probs.scatter(1, flat[:, None], 0.0)  # (p - q)+ for a one-hot q; renormalised by the race
        # an exponential race over the unnormalised residual draws from it (a zero row cannot be rejected)
        noise = torch.empty_like(residual).exponential_(generator=sampler.generator)
        drawn = (residual / noise).argmax(dim=-1)
        accepted = torch.where(st.greedy, accepted, u < p_draft)
        replacement = torch.where(st.greedy, replacement, drawn)
    return accepted, replacement


def accepted_tokens(drafts: list[int], accepted: list[bool], replacement: list[int], bonus: int) -> list[int]:
    """The tokens one request emits: its drafts up to the first rejection, then that position's replacement (or
    the bonus token when every draft stood)."""
    for i, ok in enumerate(accepted):
        if not ok:
            return drafts[:i] + [replacement[i]]
    return drafts + [bonus]
