"""A step under DP attention, as one tensor rank sees it: its own requests (whose latent cache it holds), how many
tokens and sampling rows every rank has (each rank derives the same counts from the same SchedulerOutput, so the
gathers need no size exchange), and the order in which the driver samples every rank's rows."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.layers.forward_context import DPTokens


@dataclass
class DPShare:
    local: SchedulerOutput  # this rank's requests, in SchedulerOutput order
    tokens: DPTokens  # the tokens of every rank (the MLP gathers them)
    samples: DPTokens  # the sampling rows of every rank (gathered for the driver)
    sample_requests: list[ScheduledRequest]  # every rank's sampling requests, rank after rank


def share_of(sched: SchedulerOutput, parallel: ParallelState) -> DPShare:
    ranks = parallel.tp_size
    by_rank: list[list[ScheduledRequest]] = [[] for _ in range(ranks)]
    for r in sched.requests:
        by_rank[r.dp_rank].append(r)
    mine = by_rank[parallel.tp_rank]
    tokens = [sum(len(r.token_ids) for r in reqs) for reqs in by_rank]
    sampling = [[r for r in reqs if r.sample] for reqs in by_rank]
    return DPShare(
        local=SchedulerOutput(mine, tokens[parallel.tp_rank], sched.finished_req_ids),
        tokens=DPTokens(tokens, parallel.tp_rank),
        samples=DPTokens([len(s) for s in sampling], parallel.tp_rank),
        sample_requests=[r for s in sampling for r in s],
    )
