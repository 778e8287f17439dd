"""Continuous batching under one token budget per step.

Every step: running requests first (in admission order), each gets the tokens it still has to compute (one for a
decode, the rest of a prompt for a chunked prefill) within the budget; then waiting requests first-come
first-served while budget, sequence slots and KV blocks last. There are no prefill/decode phases; chunked prefill and
prefix caching fall out of `num_computed_tokens`. When the KV pool runs dry, the newest running request is preempted
by recompute: its blocks are freed and it goes back to the front of the waiting queue.

Asynchronous scheduling: a step may be scheduled while the previous one is still on the device. A token that step
will sample is a placeholder here (`Request.num_output_placeholders`): the next step computes it at its position
with `PLACEHOLDER_TOKEN_ID`, which every worker replaces on the device with the token it sampled. Limits that a
pending token will reach (max_tokens, max_model_len) are respected before it is known; stops that depend on its value
(EOS, stop ids, stop strings) cost at most one discarded step for that request.

Speculative decoding: a decode may carry k draft tokens after its last known token (n-gram: proposed here; MTP:
proposed by the workers at the end of the request's previous step, `Request.draft_token_ids`); the step emits
1..k+1 tokens and the rejected drafts stop counting as computed (`_append_speculated`). MTP with k > 1 also
reserves k - 1 slots ahead where the pool has room: the workers' recurrent drafts write the MTP layer's KV there.
"""

from __future__ import annotations

import time
from collections import deque

from vdeploy.config import SchedulerConfig
from vdeploy.engine.kv_cache_manager import KVCacheManager
from vdeploy.engine.ngram_proposer import propose_ngram
from vdeploy.engine.outputs import PLACEHOLDER_TOKEN_ID, ModelRunnerOutput, ScheduledRequest, SchedulerOutput
from vdeploy.engine.request import Request, RequestStatus
from vdeploy.errors import ConfigError, VdeployError
from vdeploy.speculative_config import SpeculativeConfig


class QueueFull(VdeployError):
    """The waiting queue is at `max_waiting`; the server answers 503 and clients retry."""

    exit_code = 1


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv_manager: KVCacheManager, max_model_len: int,
                 speculative: SpeculativeConfig | None = None):
        self.config = config
        self.kv = kv_manager
        self.max_model_len = max_model_len
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._finished_since_last_step: list[str] = []
        # the Request each row of a step in flight belongs to, by SchedulerOutput.step_id (at most two steps under
        # async scheduling): an id finished or aborted while its step ran may already name a new request, which
        # must not get the old one's token
        self._step_owners: dict[int, dict[str, Request]] = {}
        self._num_steps = 0  # steps scheduled so far: the next step's id
        self.num_preemptions = 0
        self.speculative = speculative if speculative is not None and speculative.enabled else None
        self.num_draft_tokens = 0  # drafts verified so far
        self.num_generated_tokens = 0  # every token appended to an output
        self.num_accepted_tokens = 0  # of those, accepted
        self.num_spec_steps = 0  # request-steps that verified drafts (mean accepted length = 1 + accepted / this)
        self.draft_seconds = 0.0  # time spent proposing drafts (host n-gram lookup, or the workers' MTP passes)
        # MTP: slots reserved past a decode's tokens for the recurrent drafts (never anyone preempted for them)
        self._mtp = self.speculative is not None and self.speculative.uses_mtp
        self._lookahead = self.speculative.num_speculative_tokens - 1 if self._mtp else 0
        self.num_penalty_requests = 0  # live requests whose sampling needs every token's value (penalties)
        self.num_guided_requests = 0  # live requests whose grammar mask needs the previous token's value

    # ---- intake -------------------------------------------------------------------------------------------------
    def check_prompt(self, num_prompt_tokens: int) -> None:
        """Reject prompts that can never run. Pure: safe to call from another thread."""
        if num_prompt_tokens == 0:
            raise ConfigError("the prompt is empty")
        if num_prompt_tokens > self.max_model_len:
            raise ConfigError(
                f"the prompt has {num_prompt_tokens} tokens, more than max_model_len={self.max_model_len}",
                hint="shorten the prompt or raise --max-model-len (bounded by the model and the KV cache size)",
            )
        if not self.config.enable_chunked_prefill and num_prompt_tokens > self.config.max_num_batched_tokens:
            raise ConfigError(
                f"the prompt has {num_prompt_tokens} tokens, more than max_num_batched_tokens="
                f"{self.config.max_num_batched_tokens}, and chunked prefill is off",
                hint="enable chunked prefill or raise --max-num-batched-tokens",
            )

    def add_request(self, request: Request) -> None:
        self.check_prompt(request.num_prompt_tokens)
        if request.request_id in self.requests:
            raise ConfigError(f"duplicate request id {request.request_id!r}")
        if len(self.waiting) >= self.config.max_waiting:
            raise QueueFull(
                f"the waiting queue is full ({self.config.max_waiting} requests)", hint="retry shortly"
            )
        request.status = RequestStatus.WAITING
        self.waiting.append(request)
        self.requests[request.request_id] = request
        self.num_penalty_requests += request.sampling_params.uses_penalties
        self.num_guided_requests += request.sampling_params.guided is not None

    def abort_requests(self, request_ids: list[str]) -> list[Request]:
        aborted = []
        for rid in request_ids:
            req = self.requests.get(rid)
            if req is not None and not req.is_finished:
                self.finish_request(req, RequestStatus.FINISHED_ABORTED)
                aborted.append(req)
        return aborted

    def finish_request(self, request: Request, status: RequestStatus, stop_reason: str | int | None = None) -> None:
        """Mark finished and release its KV blocks at once (they stay in the prefix cache until evicted)."""
        if request.status == RequestStatus.RUNNING:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        request.status = status
        request.stop_reason = stop_reason
        self.kv.free(request)
        del self.requests[request.request_id]
        self.num_penalty_requests -= request.sampling_params.uses_penalties
        self.num_guided_requests -= request.sampling_params.guided is not None
        self._finished_since_last_step.append(request.request_id)

    # ---- one step -----------------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        scheduled: list[tuple[Request, int]] = []
        drafts: dict[str, list[int]] = {}  # speculative decoding: the draft tokens of this step, by request
        preempted_now = False

        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            # (attributes, not properties: this loop and _build_output run for every request on every step)
            num_new = min(len(req.prompt_token_ids) + len(req.output_token_ids) + req.num_output_placeholders
                          - req.num_computed_tokens, budget)
            if num_new <= 0 or (req.num_output_placeholders and self._pending_token_finishes(req)):
                i += 1  # nothing to compute, or the token in flight is its last: wait for it
                continue
            if num_new == 1 and self.speculative is not None:
                proposal = self._propose(req, budget - 1)
                # drafts only where there is room for them: never preempt anyone for a guess
                if proposal and self.kv.allocate_slots(req, 1 + len(proposal)) is not None:
                    drafts[req.request_id] = proposal
                    num_new += len(proposal)
                # best effort, and never past max_model_len (no token can land there)
                lookahead = min(self._lookahead, self.max_model_len - req.num_computed_tokens - num_new)
                if lookahead > 0:
                    self.kv.allocate_slots(req, num_new + lookahead)
            while self.kv.allocate_slots(req, num_new) is None:
                # the newest of the same KV pool (DP attention: one pool per rank); never one already scheduled
                # this step (those are < i, and req itself qualifies)
                victim = next(r for r in reversed(self.running) if r.dp_rank == req.dp_rank)
                self._preempt(victim)
                preempted_now = True
                if victim is req:
                    break
            if req.status != RequestStatus.RUNNING:
                break  # the request preempted itself: nobody after it in `running` is left either
            scheduled.append((req, num_new))
            budget -= num_new
            i += 1

        # Admitting new work right after a preemption would just thrash the pool.
        while (
            not preempted_now
            and self.waiting
            and budget > 0
            and len(self.running) < self.config.max_num_seqs
        ):
            req = self.waiting[0]
            if req.num_output_placeholders:
                break  # preempted while a step sampling for it was in flight: its prompt needs that token's value
            # prompt logprobs need every prompt position's logits: no cache hit may skip one
            hit_blocks, num_hit = ([], 0) if req.needs_prompt_logprobs else self.kv.get_computed_blocks(req)
            num_new = req.num_tokens - num_hit
            # without chunked prefill a prompt runs whole: it waits for a step with room for all of it; but a
            # request preempted after it grew past the budget would wait forever, so its recompute is chunked
            if (num_new > budget and not self.config.enable_chunked_prefill
                    and num_new <= self.config.max_num_batched_tokens):
                break
            num_new = min(num_new, budget)
            if self.kv.allocate_slots(req, num_new, hit_blocks) is None:
                break
            self.waiting.popleft()
            req.num_computed_tokens = num_hit
            if req.num_cached_tokens < 0:
                req.num_cached_tokens = num_hit
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            scheduled.append((req, num_new))
            budget -= num_new

        return self._build_output(scheduled, drafts)

    def _pending_token_finishes(self, req: Request) -> bool:
        """A token still in flight will take the request to max_tokens or max_model_len."""
        if not req.num_output_placeholders:
            return False
        max_tokens = req.sampling_params.max_tokens
        if max_tokens is not None and req.num_output_tokens + req.num_output_placeholders >= max_tokens:
            return True
        return req.num_tokens_with_placeholders >= self.max_model_len

    def _preempt(self, req: Request) -> None:
        self.running.remove(req)
        self.kv.free(req)
        req.status = RequestStatus.PREEMPTED
        req.num_computed_tokens = 0
        req.num_blocks_sent = 0  # readmitted with new blocks: the workers get the whole table again
        req.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)

    def _build_output(self, scheduled: list[tuple[Request, int]], drafts: dict[str, list[int]]) -> SchedulerOutput:
        items = []
        next_token_ids: dict[str, int] = {}  # MTP: the token after each non-final prefill chunk
        block_ids_of = self.kv.block_ids_view
        for req, num_new in scheduled:
            start = req.num_computed_tokens
            end = start + num_new
            num_prompt, num_output = len(req.prompt_token_ids), len(req.output_token_ids)
            num_known = num_prompt + num_output
            proposal = drafts.get(req.request_id) if drafts else None
            if proposal:  # the last known token, then the drafts the step verifies
                token_ids = req.token_ids_slice(start, start + 1) + proposal
            elif num_new == 1 and start == num_known:  # the token sampled by the step in flight
                token_ids = [PLACEHOLDER_TOKEN_ID]
            elif num_new == 1 and num_prompt <= start < num_known:  # a decode of a known token
                token_ids = [req.output_token_ids[start - num_prompt]]
            else:
                token_ids = req.token_ids_slice(start, end)
                if end > num_known:  # placeholders only ever end a one-token decode; kept general
                    token_ids = token_ids + [PLACEHOLDER_TOKEN_ID] * (end - max(start, num_known))
            sample = proposal is not None or end == num_known + req.num_output_placeholders
            if self._mtp and end < num_known:
                next_token_ids[req.request_id] = req.token_ids_slice(end, end + 1)[0]
            params = req.sampling_params
            # prompt logprobs: row j of this chunk (position start + j) scores prompt token start + j + 1
            targets = None
            if params.prompt_logprobs is not None and start < num_prompt - 1 and req.needs_prompt_logprobs:
                targets = req.prompt_token_ids[start + 1: min(end, num_prompt - 1) + 1]
            table, sent = block_ids_of(req.request_id), req.num_blocks_sent
            req.num_blocks_sent = len(table)
            items.append(
                ScheduledRequest(
                    req.request_id,
                    token_ids,
                    start,
                    table[sent:],  # a copy: the whole table when sent == 0, else only the new blocks
                    sample,
                    params if sample else None,
                    # the sampled token's index: seeds and min_tokens count the tokens still in flight too
                    num_output + req.num_output_placeholders,
                    req.all_token_ids if sample and params.uses_penalties else None,
                    num_prompt,
                    new_table=sent == 0,
                    num_draft_tokens=len(proposal) if proposal else 0,
                    lora_slot=req.lora_slot,
                    dp_rank=req.dp_rank,
                    prompt_logprob_targets=targets,
                    num_prompt_top_logprobs=params.prompt_logprobs or 0,
                )
            )
            # The tokens count as computed once scheduled: the next step builds on them.
            req.num_computed_tokens = end
            req.num_output_placeholders += sample
        # Decodes (one query token) first, as the attention metadata expects; stable so order is otherwise kept.
        items.sort(key=lambda s: len(s.token_ids) != 1)
        finished = []
        if items:  # an empty step is never sent: its finished ids wait for the next one (ranks drop their tables)
            finished, self._finished_since_last_step = self._finished_since_last_step, []
        output = SchedulerOutput(
            requests=items, num_scheduled_tokens=sum(len(s.token_ids) for s in items), finished_req_ids=finished,
            next_token_ids=next_token_ids, step_id=self._num_steps,
        )
        if items:
            self._step_owners[output.step_id] = {req.request_id: req for req, _ in scheduled}
            self._num_steps += 1
        return output

    def abandon_steps(self) -> set[str]:
        """The ids of the live requests in every step scheduled but not yet updated, which are forgotten: a failed
        step's outputs never come back."""
        owners, self._step_owners = self._step_owners, {}
        return {rid for step in owners.values() for rid, req in step.items() if self.requests.get(rid) is req}

    def _owner(self, owners: dict[str, Request], rid: str) -> Request | None:
        """The live request a row of a step belongs to; None when that request finished or was aborted while the
        step ran (the row is dropped, even where a new request took its id since)."""
        req = self.requests.get(rid)
        return req if req is not None and owners.get(rid) is req else None

    def update_from_output(self, sched_out: SchedulerOutput, runner_out: ModelRunnerOutput) -> list[Request]:
        """Append sampled tokens, apply token-level stop rules. Returns the requests that got a token (finished
        ones included, already freed)."""
        owners = self._step_owners.pop(sched_out.step_id, {})
        for s in sched_out.requests:  # these rows' KV is written now: the prefix-cache blocks they fill are sound
            if self._owner(owners, s.req_id) is not None:
                self.kv.confirm_computed(s.req_id, s.start_pos + len(s.token_ids))
        if runner_out.prompt_logprobs:
            self._append_prompt_logprobs(sched_out, runner_out.prompt_logprobs, owners)
        updated = []
        logprobs = runner_out.logprobs or [None] * len(runner_out.req_ids)
        accepted = runner_out.accepted_token_ids
        num_drafts = {s.req_id: s.num_draft_tokens for s in sched_out.requests if s.num_draft_tokens} \
            if accepted else {}
        next_drafts = runner_out.draft_token_ids
        self.draft_seconds += runner_out.draft_seconds
        for row, (rid, token, lp) in enumerate(zip(runner_out.req_ids, runner_out.sampled_token_ids, logprobs)):
            req = self._owner(owners, rid)
            if req is None:  # finished or aborted while the step ran: the token is dropped
                continue
            req.num_output_placeholders -= 1
            if accepted is not None and accepted[row] is not None:
                self._append_speculated(req, accepted[row], num_drafts[rid])
            else:
                req.append_output_token(token, lp)
                self.num_generated_tokens += 1
                status, reason = req.stop_after(token, self.max_model_len)
                if status is not None:
                    self.finish_request(req, status, reason)
            if next_drafts is not None:
                req.draft_token_ids = next_drafts[row]
            updated.append(req)
        return updated

    def _append_prompt_logprobs(self, sched_out: SchedulerOutput, chunks: dict[str, list],
                                owners: dict[str, Request]) -> None:
        """Each chunk's prompt logprobs, in position order; a chunk computed again after a preemption adds only the
        positions not yet held."""
        starts = {s.req_id: s.start_pos for s in sched_out.requests if s.prompt_logprob_targets}
        for rid, entries in chunks.items():
            req = self._owner(owners, rid)
            if req is None or rid not in starts:  # finished or aborted while the step ran
                continue
            skip = len(req.prompt_logprobs) - starts[rid]
            if 0 <= skip < len(entries):
                req.prompt_logprobs.extend(entries[skip:])

    def _append_speculated(self, req: Request, tokens: list[int], num_drafts: int) -> None:
        """The tokens a verified step emits (accepted drafts, then one more), stop rules token by token; the
        rejected drafts' KV slots no longer count as computed (the next step overwrites them)."""
        self.num_draft_tokens += num_drafts
        self.num_accepted_tokens += len(tokens) - 1
        self.num_spec_steps += 1
        for token in tokens:
            req.append_output_token(token)
            self.num_generated_tokens += 1
            status, reason = req.stop_after(token, self.max_model_len)
            if status is not None:
                self.finish_request(req, status, reason)
                return
        req.num_computed_tokens -= num_drafts - (len(tokens) - 1)

    def _propose(self, req: Request, budget: int) -> list[int]:
        """Drafts for a decode (n-gram, or the MTP drafts the workers proposed), within its limits; none where
        verification could not be exact (penalties, logprobs, grammars, min_tokens still banning EOS)."""
        params, spec = req.sampling_params, self.speculative
        mtp_drafts, req.draft_token_ids = req.draft_token_ids, []  # proposed for this decode only
        num_output = len(req.output_token_ids)
        if (params.logprobs is not None or params.uses_penalties or params.guided is not None
                or num_output < params.min_tokens or req.num_output_placeholders):
            return []
        k = min(spec.num_speculative_tokens, budget, self.max_model_len - req.num_tokens - 1)
        if params.max_tokens is not None:
            k = min(k, params.max_tokens - num_output - 1)
        if k <= 0:
            return []
        if spec.method == "mtp":
            return mtp_drafts[:k]
        start = time.perf_counter()
        proposal = propose_ngram(req.all_token_ids, k, spec.prompt_lookup_min, spec.prompt_lookup_max)
        self.draft_seconds += time.perf_counter() - start
        return proposal

    # ---- state --------------------------------------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def has_unfinished_requests(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def needs_known_tokens(self) -> bool:
        """Some live request samples with penalties, which need the value of every previous token, or with a
        grammar, whose mask is computed on the host from the previous token: the next step must wait for the
        tokens in flight (they are not placeholders on the workers' side)."""
        return self.num_penalty_requests > 0 or self.num_guided_requests > 0
