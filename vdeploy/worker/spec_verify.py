"""Verifying draft tokens in one target forward: exact for greedy, distribution-preserving for sampling.

A request that speculates computes [t0, d1 … dk] in one step; the logits at t0, d1 … d(k-1) judge d1 … dk, the logits
at dk give the bonus token. Greedy: d(i+1) is accepted while it equals the argmax at position i, and the first
mismatch is replaced by that argmax, so the output is token for token what plain greedy decoding gives. Sampling
(drafts are deterministic, q = one-hot): d is accepted with probability p(d); on rejection the token is drawn from p
with d removed and renormalised, i.e. from (p - q)+ — the standard speculative-sampling rule, which leaves the
output distributed exactly as p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vdeploy.engine.outputs import ScheduledRequest
from vdeploy.worker.device import to_device
from vdeploy.worker.sampling_tensors import SamplingTensors, step_seed

# a seeded request's verification draws come from their own streams, never the one its bonus token is drawn from
# (step_seed(seed, n)): an acceptance test and a draw that share random numbers would bias the output
_VERIFY_SALT = 0x5DEECE66D


def verify_drafts(sampler, logits: torch.Tensor, requests: list[ScheduledRequest],
                  drafts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [S, V'] at the draft-judging positions of the speculating requests, row order = requests expanded
    by their draft count; drafts: each request's draft tokens. Returns (accepted [S] bool, replacement [S] int64)
    on the device: whether each draft stands, and the token to emit instead where it does not."""
    logits = logits[:, : sampler.vocab_size].float()  # [S, V]
    rows = [r for r, d in zip(requests, drafts) for _ in d]
    flat = to_device([t for d in drafts for t in d], logits.device)  # [S]
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
        _seeded_draws(u, noise, st.row_seeds, [j for d in drafts for j in range(len(d))])
        drawn = (residual / noise).argmax(dim=-1)
        accepted = torch.where(st.greedy, accepted, u < p_draft)
        replacement = torch.where(st.greedy, replacement, drawn)
    return accepted, replacement


def _seeded_draws(u: torch.Tensor, noise: torch.Tensor, row_seeds: list[int | None], draft_index: list[int]) -> None:
    """A seeded request's rows take their acceptance draw u [S] and residual noise [S, V] from a stream of
    (its step seed, which draft): the same seed gives the same tokens, whatever else shares the batch."""
    for row, (base, j) in enumerate(zip(row_seeds, draft_index)):
        if base is not None:
            gen = torch.Generator(device=u.device)
            gen.manual_seed(step_seed(base ^ _VERIFY_SALT, j))
            u[row] = torch.rand((), generator=gen, device=u.device)
            noise[row].exponential_(generator=gen)


def accepted_tokens(drafts: list[int], accepted: list[bool], replacement: list[int], bonus: int) -> list[int]:
    """The tokens one request emits: its drafts up to the first rejection, then that position's replacement (or
    the bonus token when every draft stood)."""
    for i, ok in enumerate(accepted):
        if not ok:
            return drafts[:i] + [replacement[i]]
    return drafts + [bonus]


@dataclass
class DraftVerdict:
    """The driver's judgement of a step's drafts, kept on the device until the step's tokens are read."""

    samples: list[int]  # which rows of the step's samples speculated
    drafts: list[list[int]]  # their drafts
    accepted: torch.Tensor  # [S] bool, draft by draft
    replacement: torch.Tensor  # [S] the token emitted where a draft is rejected

    def fill_last_emitted(self, info: torch.Tensor, bonus: torch.Tensor) -> None:
        """On the device, for each speculating row: info[0] = its rejected drafts (k - accepted), info[1] = the
        last token it emits (the first rejection's replacement, or the bonus token when every draft stood)."""
        ks = np.array([len(d) for d in self.drafts], dtype=np.int64)  # [R]
        device, cols = self.accepted.device, np.arange(ks.max())
        # [R, k_max] positions in accepted/replacement; past a row's own drafts, the appended False below
        index = np.where(cols < ks[:, None], (np.cumsum(ks) - ks)[:, None] + cols, ks.sum())
        index = to_device(index, device)
        stood = torch.cat((self.accepted, self.accepted.new_zeros(1)))[index]  # [R, k_max] bool
        kept = stood.to(torch.int64).cumprod(dim=1).sum(dim=1)  # [R] leading accepted drafts
        k = to_device(ks, device)  # [R]
        rows = to_device(self.samples, device)  # [R]
        replaced = self.replacement[index.gather(1, torch.minimum(kept, k - 1)[:, None])[:, 0]]  # [R]
        info[0, rows] = k - kept
        info[1, rows] = torch.where(kept < k, replaced, bonus[rows])

    def emitted(self, bonus: list[int], num_rows: int) -> list[list[int] | None]:
        """Per sample row, the tokens it emits (None where it did not speculate); `bonus`: the tokens sampled at
        every row's last position."""
        accepted, replacement = self.accepted.tolist(), self.replacement.tolist()
        out: list[list[int] | None] = [None] * num_rows
        offset = 0
        for row, drafts in zip(self.samples, self.drafts):
            k = len(drafts)
            out[row] = accepted_tokens(drafts, accepted[offset:offset + k], replacement[offset:offset + k], bonus[row])
            offset += k
        return out
