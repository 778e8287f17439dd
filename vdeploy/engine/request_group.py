"""A request as the engine reports it: its n samples (child requests with their own detokenizers) and the
RequestOutput built from them each step. Pure bookkeeping; EngineCore decides when a group is done."""

from __future__ import annotations

import time
from dataclasses import dataclass

from vdeploy.engine.detokenizer import IncrementalDetokenizer
from vdeploy.engine.outputs import CompletionOutput, OutputKind, RequestOutput, TokenLogprobs
from vdeploy.engine.request import Request


@dataclass
class Sample:
    """One of a request's n samples: the scheduled child request and its text state."""

    request: Request
    detokenizer: IncrementalDetokenizer
    num_tokens_reported: int = 0  # in RequestOutputs
    num_tokens_detokenized: int = 0
    finished_reported: bool = False


@dataclass
class RequestGroup:
    request_id: str
    prompt_token_ids: list[int]
    samples: list[Sample]
    arrival_time: float
    output_kind: OutputKind = OutputKind.CUMULATIVE
    prompt_logprobs_reported: bool = False  # OutputKind.DELTA sends them once

    @property
    def finished(self) -> bool:
        return all(s.finished_reported for s in self.samples)

    def take_prompt_logprobs(self) -> list[TokenLogprobs | None] | None:
        """The prompt logprobs (sample 0 computes them) once the whole prompt has them, [None, ...] per prompt
        token; with OutputKind.DELTA only the first time."""
        first = self.samples[0].request if self.samples else None
        if first is None or first.sampling_params.prompt_logprobs is None or first.needs_prompt_logprobs:
            return None
        if self.output_kind is OutputKind.DELTA:
            if self.prompt_logprobs_reported:
                return None
            self.prompt_logprobs_reported = True
        return [None, *first.prompt_logprobs]


def child_seed(seed: int | None, index: int) -> int | None:
    # Sample 0 keeps the request's seed (n=1 and sample 0 of n>1 agree); the others get distinct derived seeds.
    if seed is None or index == 0:
        return seed
    return (seed * 1_000_003 + index * 7_919) % (1 << 63)


def completion_output(sample: Sample, kind: OutputKind) -> CompletionOutput:
    """The sample's output (cumulative, or only what is new for OutputKind.DELTA), with what is new since the last
    report (marks it reported)."""
    req = sample.request
    finished = req.is_finished
    delta_text = sample.detokenizer.take_delta(finished)
    reported = sample.num_tokens_reported
    delta_ids = req.output_token_ids[reported:]
    sample.num_tokens_reported = req.num_output_tokens
    sample.finished_reported = finished
    wants_logprobs = req.sampling_params.logprobs is not None
    if kind is OutputKind.DELTA:  # no copy of the whole answer: O(new tokens) however long it is
        return CompletionOutput.delta(req.index, delta_text, delta_ids,
                                      req.output_logprobs[reported:] if wants_logprobs else None,
                                      req.status.finish_reason, req.stop_reason)
    return CompletionOutput(
        index=req.index,
        text=sample.detokenizer.emitted_text,
        token_ids=list(req.output_token_ids),
        delta_text=delta_text,
        delta_token_ids=delta_ids,
        logprobs=list(req.output_logprobs) if wants_logprobs else None,
        finish_reason=req.status.finish_reason,
        stop_reason=req.stop_reason,
    )


def request_output(group: RequestGroup, samples: list[Sample]) -> RequestOutput:
    """The group's RequestOutput for `samples` (those with news). Runs for every request on every step: the
    group-wide facts are computed once (a batch of 256 decodes spends a sizeable share of the step's host time
    here)."""
    completions = [completion_output(s, group.output_kind) for s in samples]
    finished = group.finished
    metrics = {"arrival_time": group.arrival_time}
    first_token_times = [t for t in (s.request.first_token_time for s in group.samples) if t]
    if first_token_times:
        metrics["first_token_time"] = min(first_token_times)
    if finished:
        metrics["finished_time"] = time.monotonic()
    # the prompt is computed once for the group: later samples find in the cache what the first one just computed,
    # so the group's hit is the smallest of its scheduled samples' (-1: not scheduled yet)
    cached = min((s.request.num_cached_tokens for s in group.samples if s.request.num_cached_tokens >= 0), default=0)
    return RequestOutput(
        request_id=group.request_id,
        prompt_token_ids=group.prompt_token_ids,
        outputs=completions,
        finished=finished,
        num_cached_tokens=cached,
        metrics=metrics,
        prompt_logprobs=group.take_prompt_logprobs(),
    )
