"""Plain dataclasses at the engine's boundaries.

scheduler  --SchedulerOutput-->  executor / model runner (every rank)
model runner (the driver rank)  --ModelRunnerOutput-->  scheduler
engine  --RequestOutput-->  LLM / server
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vdeploy.engine.sampling_params import SamplingParams

# In ScheduledRequest.token_ids: the token that the previous step samples for this request, not yet known to the
# scheduler; every worker substitutes the token it sampled (asynchronous scheduling).
PLACEHOLDER_TOKEN_ID = -1


class OutputKind(enum.Enum):
    """What a request's RequestOutputs carry (vLLM's RequestOutputKind)."""

    CUMULATIVE = "cumulative"  # every step: everything so far (text, token ids, logprobs) and the deltas
    # every step: only what is new — text, token_ids and logprobs hold the delta, so a step costs the same at the
    # ten-thousandth token as at the first (a consumer that keeps the whole answer accumulates it)
    DELTA = "delta"
    FINAL_ONLY = "final_only"  # one output, once every sample has finished (offline generation)


@dataclass(slots=True)  # built for every request on every step
class ScheduledRequest:
    """One request's share of a step: everything needed to run it, given the rank's block tables."""

    req_id: str
    token_ids: list[int]  # the tokens computed this step: positions [start_pos, start_pos + len)
    start_pos: int  # the request's num_computed_tokens before this step
    # new_table: the request's whole block table; otherwise the blocks appended since the scheduler last scheduled
    # it (ranks keep the tables: vdeploy.worker.block_tables)
    block_ids: list[int]
    sample: bool  # True when this step reaches the end of the known tokens, so a new token is sampled
    sampling_params: SamplingParams | None = None  # set when sample
    num_output_tokens: int = 0  # tokens generated so far (seeded sampling derives its per-step seed from it)
    # prompt + output token ids, only when the request uses repetition/presence/frequency penalties
    penalty_token_ids: list[int] | None = None
    num_prompt_tokens: int = 0
    # guided decoding: the allowed next tokens, packed little-endian int32 words (bit t of word t // 32 = token t
    # allowed), ceil(vocab / 32) of them; filled on the engine host after scheduling, applied by the sampler
    token_bitmask: bytes | None = None
    new_table: bool = True
    num_draft_tokens: int = 0  # speculative decoding: the last this-many token_ids are drafts to verify
    lora_slot: int = -1  # the adapter slot its tokens use (vdeploy.lora), -1: the base model
    dp_rank: int = 0  # DP attention: the only tensor rank that runs its attention (others skip the request)
    # prompt logprobs: the prompt token after each of this chunk's first len(...) rows, whose logprob (and the top
    # num_prompt_top_logprobs) the driver returns (vdeploy.worker.prompt_logprobs); None when not asked or done
    prompt_logprob_targets: list[int] | None = None
    num_prompt_top_logprobs: int = 0


@dataclass
class SchedulerOutput:
    requests: list[ScheduledRequest]
    num_scheduled_tokens: int
    finished_req_ids: list[str] = field(default_factory=list)  # freed since the last step (runners drop state)
    # MTP speculative decoding: the known token after each non-final prefill chunk, by request (the MTP module's
    # input at the chunk's last row); empty otherwise
    next_token_ids: dict[str, int] = field(default_factory=dict)
    step_id: int = 0  # the scheduler's count of steps before this one: its rows' tokens go to the requests scheduled

    @property
    def is_empty(self) -> bool:
        return not self.requests

    @property
    def scores_prompts(self) -> bool:
        """Some request scores prompt tokens this step (prompt logprobs)."""
        return any(r.prompt_logprob_targets for r in self.requests)


@dataclass
class TokenLogprobs:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]  # (token_id, logprob), best first
    rank: int | None = None  # 1 + how many tokens were likelier (prompt logprobs; None where not computed)


@dataclass
class ModelRunnerOutput:
    """Sampled tokens for the requests of a SchedulerOutput that had `sample=True`, in the same order."""

    req_ids: list[str]
    sampled_token_ids: list[int]
    logprobs: list[TokenLogprobs] | None = None  # aligned with req_ids when any request asked for logprobs
    # speculative decoding: per row, every token the step emits (accepted drafts + one more), None for rows that
    # did not speculate; sampled_token_ids[i] is then the first of them
    accepted_token_ids: list[list[int] | None] | None = None
    # MTP speculative decoding: per row, the drafts for the request's next step, and the time drafting took
    draft_token_ids: list[list[int]] | None = None
    draft_seconds: float = 0.0
    # prompt logprobs of this step's chunks, by request: one entry per ScheduledRequest.prompt_logprob_targets
    prompt_logprobs: dict[str, list[TokenLogprobs]] | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str  # full text so far
    token_ids: list[int]
    delta_text: str = ""  # text added since the previous RequestOutput for this request
    delta_token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs] | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    stop_reason: str | int | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @classmethod
    def delta(cls, index: int, text: str, token_ids: list[int], logprobs: list[TokenLogprobs] | None,
              finish_reason: str | None, stop_reason: str | int | None) -> "CompletionOutput":
        """An OutputKind.DELTA output: only what is new, in both the full and the delta fields."""
        return cls(index, text, token_ids, text, token_ids, logprobs, finish_reason, stop_reason)


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # arrival, first_token, finished times
    # SamplingParams.prompt_logprobs: one entry per prompt token, None for the first (nothing precedes it); once the
    # whole prompt is computed (with OutputKind.DELTA in one output only)
    prompt_logprobs: list[TokenLogprobs | None] | None = None


@dataclass
class EngineStats:
    num_running: int
    num_waiting: int
    kv_usage: float  # fraction of KV blocks in use
    num_free_blocks: int
    num_total_blocks: int
    prefix_cache_queries: int  # tokens looked up
    prefix_cache_hits: int  # tokens served from the prefix cache
    num_preemptions: int
    prompt_tokens_total: int
    generation_tokens_total: int
    spec_draft_tokens_total: int = 0  # speculative decoding: drafts verified
    spec_accepted_tokens_total: int = 0  # of those, accepted
    spec_steps_total: int = 0  # request-steps that verified drafts
    spec_draft_seconds_total: float = 0.0  # time spent proposing drafts (n-gram lookup or MTP passes)

    @property
    def spec_mean_accepted_length(self) -> float:
        """Tokens a speculative request-step emits on average (accepted drafts + the one it always gets)."""
        return 1 + self.spec_accepted_tokens_total / self.spec_steps_total if self.spec_steps_total else 0.0
