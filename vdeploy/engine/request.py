"""One generation request as the scheduler sees it.

A request's only progress counter is `num_computed_tokens`: how many of its tokens (prompt, then generated) already
have their keys/values in the KV cache. There is no prefill or decode phase: a request whose
`num_computed_tokens < num_tokens` simply has tokens left to compute, and sampling happens whenever a step reaches
the end of the known tokens.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from vdeploy.engine.outputs import TokenLogprobs
from vdeploy.engine.sampling_params import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"  # blocks freed, back in the waiting queue, will recompute
    FINISHED_STOPPED = "stop"  # eos, stop token id or stop string
    FINISHED_LENGTH = "length"  # max_tokens or max_model_len
    FINISHED_ABORTED = "abort"

    @property
    def is_finished(self) -> bool:
        return self in (RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH, RequestStatus.FINISHED_ABORTED)

    @property
    def finish_reason(self) -> str | None:
        return self.value if self.is_finished else None


@dataclass(eq=False)  # identity semantics: queues remove *this* request, never compare token lists
class Request:
    request_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams
    eos_token_ids: tuple[int, ...] = ()
    arrival_time: float = field(default_factory=time.monotonic)
    output_token_ids: list[int] = field(default_factory=list)
    output_logprobs: list[TokenLogprobs] = field(default_factory=list)
    num_computed_tokens: int = 0
    # Async scheduling: tokens scheduled to be sampled by steps still in flight. Their values are unknown here
    # (the workers resolve them on the device), but their count is, so the next step can already be scheduled.
    num_output_placeholders: int = 0
    num_blocks_sent: int = 0  # length of the block table the workers hold for it (0: send it whole next time)
    status: RequestStatus = RequestStatus.WAITING
    stop_reason: str | int | None = None
    num_cached_tokens: int = -1  # prefix-cache hit of the first scheduling; -1 until scheduled
    num_preemptions: int = 0
    first_token_time: float | None = None
    # Chained hashes of this request's full blocks (prefix caching); tokens never change, so they survive preemption.
    block_hashes: list[bytes] = field(default_factory=list)
    # n > 1: the parent request id and this sample's index (children are scheduled as independent requests)
    parent_id: str | None = None
    index: int = 0
    # LoRA: the adapter slot its tokens use (-1: the base model), and the salt that starts its block-hash chain
    # (prefix-cache blocks are shared only between requests of the same loaded adapter)
    lora_slot: int = -1
    cache_salt: bytes | None = None
    dp_rank: int = 0  # DP attention: the tensor rank whose latent cache holds it (vdeploy.engine.dp_kv_cache)
    # MTP speculative decoding: the drafts the last step proposed for the token after the last known one
    draft_token_ids: list[int] = field(default_factory=list)
    # SamplingParams.prompt_logprobs: entry i for prompt token i + 1, filled chunk by chunk as the prompt is computed
    prompt_logprobs: list[TokenLogprobs] = field(default_factory=list)

    @property
    def needs_prompt_logprobs(self) -> bool:
        """Prompt logprobs asked for and not all computed: no prefix-cache hit may skip a prompt position."""
        return (self.sampling_params.prompt_logprobs is not None
                and len(self.prompt_logprobs) < len(self.prompt_token_ids) - 1)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_tokens_with_placeholders(self) -> int:
        return self.num_tokens + self.num_output_placeholders

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def token_ids_slice(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output without building the concatenation."""
        n_prompt = len(self.prompt_token_ids)
        if end <= n_prompt:
            return self.prompt_token_ids[start:end]
        if start >= n_prompt:
            return self.output_token_ids[start - n_prompt : end - n_prompt]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - n_prompt]

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    def drop_output_tail(self, num_tokens: int) -> None:
        """Forget the last num_tokens output tokens (and their logprobs): emitted past a stop string."""
        if num_tokens > 0:
            del self.output_token_ids[-num_tokens:]
            del self.output_logprobs[len(self.output_token_ids):]

    def append_output_token(self, token_id: int, logprobs: TokenLogprobs | None = None) -> None:
        if self.first_token_time is None:
            self.first_token_time = time.monotonic()
        self.output_token_ids.append(token_id)
        if logprobs is not None:
            self.output_logprobs.append(logprobs)

    def stop_after(self, token: int, max_model_len: int) -> tuple[RequestStatus | None, int | None]:
        """(status, stop_reason) when `token`, just appended, ends the output by a token rule (an end id, a
        stop_token_ids entry, max_tokens, the context limit); (None, None) otherwise. Stop strings are the
        detokenizer's."""
        params = self.sampling_params
        num_output = len(self.output_token_ids)
        if num_output >= params.min_tokens:
            if not params.ignore_eos and token in self.eos_token_ids:
                return RequestStatus.FINISHED_STOPPED, None
            if token in params.stop_token_ids:
                return RequestStatus.FINISHED_STOPPED, token
        if params.max_tokens is not None and num_output >= params.max_tokens:
            return RequestStatus.FINISHED_LENGTH, None
        if len(self.prompt_token_ids) + num_output >= max_model_len:
            return RequestStatus.FINISHED_LENGTH, None
        return None, None
