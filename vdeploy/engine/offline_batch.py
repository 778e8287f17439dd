"""A batch of requests run to completion on an in-process EngineCore, for the offline API (`LLM.generate` and each
step of `LLM.beam_search`).

The waiting queue's bound (SchedulerConfig.max_waiting) is the server's back-pressure: beyond it a request gets
QueueFull, "retry shortly". An offline batch may be any size, so it is fed to the queue as the queue drains: requests
are added, in order, while there is room for them, then the engine steps, then more are added. A request with n
samples is added whole (its samples run as one group) once the queue has room for all n.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from vdeploy.engine.outputs import CompletionOutput, OutputKind, RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError


@dataclass(frozen=True)
class BatchRequest:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    lora_name: str | None = None  # a loaded LoRA adapter (None: the base model)


def run_batch(core, requests: Sequence[BatchRequest]) -> list[RequestOutput]:
    """The final output of every request, in the order given, text complete.

    Every request is checked before the first is queued, so a bad one refuses the batch with the error a single
    request would get and nothing runs. On any failure afterwards (an interrupt, a failed step) every request of the
    batch still queued or running is aborted, so none is left in the engine."""
    max_waiting = core.config.scheduler.max_waiting
    for request in requests:
        core.check_request(request.prompt_token_ids, request.params)
        if request.params.n > max_waiting:  # its samples could never be queued together
            raise ConfigError(f"n={request.params.n} samples of one prompt are more than the waiting queue holds "
                              f"(max_waiting={max_waiting})", hint="lower n or raise max_waiting")
    pending = deque(requests)
    added: list[str] = []
    finals: dict[str, RequestOutput] = {}
    latest: dict[str, dict[int, CompletionOutput]] = {}
    try:
        while pending or len(finals) < len(added):
            room = max_waiting - core.scheduler.num_waiting
            while pending and pending[0].params.n <= room:
                request = pending.popleft()
                core.add_request(request.request_id, request.prompt_token_ids, request.params,
                                 output_kind=OutputKind.FINAL_ONLY, lora_name=request.lora_name)
                added.append(request.request_id)
                latest[request.request_id] = {}
                room -= request.params.n
            for out in core.step():
                if out.request_id not in latest:  # e.g. the final output of a request an earlier call aborted
                    continue
                latest[out.request_id].update({c.index: c for c in out.outputs})
                if out.finished:
                    out.outputs = [latest[out.request_id][i] for i in sorted(latest[out.request_id])]
                    finals[out.request_id] = out
    except BaseException:
        core.abort_request([rid for rid in added if rid not in finals])
        raise
    return [finals[request.request_id] for request in requests]
