"""Greedy outputs of two engine runs compared token by token, allowing a divergence only at a near-tie.

Used where one run is an approximation of the other (an fp8 KV cache against a 16/32-bit one): a random tiny model
has top-2 logprob margins of 0.00-0.05, so an exact-token rule would fail on rounding alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GreedyAgreement:
    equal_steps: int = 0
    divergences: list[dict] = field(default_factory=list)  # one per diverged sequence: step, margin, allowed

    @property
    def ok(self) -> bool:
        return all(d["allowed"] for d in self.divergences)


def greedy_agreement(ref_outs, test_outs, near_tie: float) -> GreedyAgreement:
    """ref_outs / test_outs: CompletionOutputs with token_ids and logprobs (SamplingParams(logprobs=k), k >= 2).
    A sequence may diverge only to a token in the reference's top-k whose logprob is within `near_tie` of the
    reference's choice; its comparison stops there (the contexts differ afterwards)."""
    result = GreedyAgreement()
    for ref, test in zip(ref_outs, test_outs):
        for i, (a, b) in enumerate(zip(ref.token_ids, test.token_ids)):
            if a == b:
                result.equal_steps += 1
                continue
            top = ref.logprobs[i].top
            best = top[0][1]
            gap = next((best - lp for tok, lp in top if tok == b), None)
            result.divergences.append({"step": i, "chosen": a, "instead": b, "gap": gap,
                                       "allowed": gap is not None and gap < near_tie})
            break
    return result
