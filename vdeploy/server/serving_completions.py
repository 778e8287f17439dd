"""/v1/completions: raw prompts (text or token ids, one or a batch) -> engine -> one answer or an SSE stream.

A batch of prompts becomes one engine request per prompt; choice `index` is prompt_position * n + sample_index, as
in OpenAI's API."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from vdeploy.engine.outputs import RequestOutput
from vdeploy.server.errors import APIError, invalid_param
from vdeploy.server.logprobs import (TokenText, completion_logprobs, echoed_prompt_logprobs, join_logprobs,
                                     vllm_prompt_logprobs)
from vdeploy.server.metrics import RequestTiming
from vdeploy.server.guided_request import guided_decoding
from vdeploy.server.protocol import (
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    Usage,
    random_id,
)
from vdeploy.server.serving_base import ServingContext
from vdeploy.server.streams import (
    SSE_DONE,
    await_first_item,
    cancel_on_disconnect,
    merge_streams,
    sse_event,
    sse_response,
)

MAX_LOGPROBS = 20


def _prompts(req: CompletionRequest) -> list[str | list[int]]:
    p = req.prompt
    if isinstance(p, str):
        return [p]
    if not p:
        raise invalid_param("prompt must not be empty", "prompt")
    if all(isinstance(x, int) for x in p):
        return [list(p)]  # type: ignore[arg-type]
    return list(p)  # type: ignore[arg-type]


def _check_unsupported(req: CompletionRequest) -> None:
    if req.suffix:
        raise invalid_param("suffix is not supported by this server", "suffix", code="unsupported_value")
    if req.best_of is not None and req.best_of != req.n:
        raise invalid_param("best_of other than n is not supported by this server", "best_of",
                            code="unsupported_value")
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_LOGPROBS:
        raise invalid_param(f"logprobs must be in [0, {MAX_LOGPROBS}], got {req.logprobs}", "logprobs")
    if req.use_beam_search:
        from vdeploy.server.serving_beam_search import check_beam_request

        check_beam_request(req)
        # the search scores free continuations and cannot follow a grammar (check_beam_request refuses guided_*)
        if (req.model_extra or {}).get("structured_outputs") is not None:
            raise invalid_param("structured_outputs is not supported with use_beam_search", "structured_outputs",
                                code="unsupported_value")


def _prompt_logprobs_wanted(req: CompletionRequest) -> Optional[int]:
    """The top-N prompt positions report: for `prompt_logprobs` (vLLM) and for `echo` with `logprobs` (OpenAI's
    legacy way to score a text)."""
    wanted = [v for v in (req.prompt_logprobs, req.logprobs if req.echo else None) if v is not None]
    return max(wanted) if wanted else None


class Completions:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx

    def _tokenize(self, prompts: list[str | list[int]]) -> list[list[int]]:
        token_lists = []
        for prompt in prompts:
            if isinstance(prompt, str):
                ids = self.ctx.tokenizer.encode(prompt)
            else:
                ids = list(prompt)
                self.ctx.check_token_ids(ids, "prompt token ids", "prompt")
            if not ids:
                raise invalid_param("prompt must not be empty", "prompt")
            token_lists.append(ids)
        return token_lists

    async def create(self, raw: Request, req: CompletionRequest) -> Any:
        ctx = self.ctx
        lora_name = ctx.check_model(req.model)
        ctx.reject_unsupported(req)
        _check_unsupported(req)
        prompts = _prompts(req)
        token_lists = await asyncio.to_thread(self._tokenize, prompts)  # off the event loop
        token_lists = [ctx.truncated(ids, req) for ids in token_lists]
        ctx.check_fits_queue(len(token_lists) * req.n, "n" if len(token_lists) == 1 else "prompt")
        explicit = "max_tokens" in req.model_fields_set and req.max_tokens is not None
        # vLLM's structured_outputs (or guided_*) and response_format; a raw prompt has no reasoning split,
        # so the grammar starts at the first token
        guided = guided_decoding(req, None, reasoning=False)
        budgets = [ctx.output_budget(len(ids), req.max_tokens, explicit=explicit, prompt_param="prompt")
                   for ids in token_lists]
        echo_texts = [  # the prompt as given, or as what is left of it after truncate_prompt_tokens
            (p if isinstance(p, str) and req.truncate_prompt_tokens is None else ctx.tokenizer.decode(ids))
            if req.echo else "" for p, ids in zip(prompts, token_lists)
        ]
        request_id = random_id("cmpl")
        if req.use_beam_search:
            if lora_name is not None:
                raise invalid_param("beam search with a LoRA adapter is not supported", "use_beam_search",
                                    code="unsupported_value")
            from vdeploy.server.serving_beam_search import beam_search_completion

            search = beam_search_completion(ctx, req, request_id, token_lists, budgets, echo_texts)
            return JSONResponse((await cancel_on_disconnect(raw, search)).model_dump())
        params = []
        for budget in budgets:
            params.append(ctx.sampling_params(req, max_tokens=budget, logprobs=req.logprobs,
                                              prompt_logprobs=_prompt_logprobs_wanted(req)))
            params[-1].guided = guided
        timings = [RequestTiming(arrival=time.monotonic()) for _ in token_lists]
        streams = [
            ctx.generate(ids, sp, f"{request_id}-{i}" if len(token_lists) > 1 else request_id, timings[i],
                         lora_name=lora_name, cache_salt=req.cache_salt)
            for i, (ids, sp) in enumerate(zip(token_lists, params, strict=True))
        ]
        merged = merge_streams(streams)
        if req.stream:
            merged = await await_first_item(raw, merged)
            prompt_lens = [len(ids) for ids in token_lists]
            return sse_response(self._stream(req, request_id, merged, timings, echo_texts, prompt_lens))
        response = await cancel_on_disconnect(raw, self._collect(req, request_id, merged, timings, echo_texts))
        return JSONResponse(response.model_dump())

    async def _collect(
        self, req: CompletionRequest, request_id: str, merged: AsyncIterator[tuple[int, RequestOutput]],
        timings: list[RequestTiming], echo_texts: list[str],
    ) -> CompletionResponse:
        n, num_prompts = req.n, len(timings)
        token_text = TokenText(self.ctx.tokenizer)
        texts = [""] * (n * num_prompts)
        num_tokens = [0] * (n * num_prompts)
        logprobs: list[list] = [[] for _ in texts]
        finish: list[Optional[str]] = [None] * len(texts)
        stop_reason: list[Any] = [None] * len(texts)
        prompt_tokens = [0] * num_prompts
        cached = [0] * num_prompts
        scored: list[Optional[RequestOutput]] = [None] * num_prompts  # the output carrying the prompt's logprobs
        async for position, out in merged:
            prompt_tokens[position], cached[position] = len(out.prompt_token_ids), out.num_cached_tokens
            if out.prompt_logprobs is not None:
                scored[position] = out
            for c in out.outputs:
                i = position * n + c.index
                texts[i] += c.delta_text
                num_tokens[i] += len(c.delta_token_ids)
                if req.logprobs is not None:
                    logprobs[i].extend(c.logprobs or [])
                if c.finish_reason is not None:
                    finish[i], stop_reason[i] = c.finish_reason, c.stop_reason
        choices = []
        for i, text in enumerate(texts):
            echo = echo_texts[i // n]
            lp = completion_logprobs(logprobs[i], req.logprobs, token_text, len(echo)) \
                if req.logprobs is not None else None
            prompt = scored[i // n]
            if echo and lp is not None and prompt is not None:
                lp = join_logprobs(echoed_prompt_logprobs(prompt.prompt_token_ids, prompt.prompt_logprobs,
                                                          req.logprobs, token_text), lp)
            plp = vllm_prompt_logprobs(prompt.prompt_logprobs, token_text) \
                if req.prompt_logprobs is not None and prompt is not None else None
            choices.append(CompletionChoice(index=i, text=echo + text, logprobs=lp, finish_reason=finish[i],
                                            stop_reason=stop_reason[i], prompt_logprobs=plp))
        for position, timing in enumerate(timings):
            self.ctx.metrics.observe_finished(timing, finish[position * n] or "abort")
        completion_tokens = sum(num_tokens)
        return CompletionResponse(
            id=request_id,
            model=self.ctx.answer_model(req.model),
            choices=choices,
            usage=Usage.of(sum(prompt_tokens), completion_tokens, sum(cached)),
        )

    async def _stream(
        self, req: CompletionRequest, request_id: str, merged: AsyncIterator[tuple[int, RequestOutput]],
        timings: list[RequestTiming], echo_texts: list[str], prompt_lens: list[int],
    ) -> AsyncIterator[str]:
        n, num_prompts = req.n, len(timings)
        created = int(time.time())
        model = self.ctx.answer_model(req.model)
        token_text = TokenText(self.ctx.tokenizer)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        continuous = bool(req.stream_options and req.stream_options.continuous)
        text_offsets = [len(echo_texts[i // n]) for i in range(n * num_prompts)]
        num_tokens = [0] * (n * num_prompts)
        prompt_tokens = list(prompt_lens)
        cached = [0] * num_prompts
        finish: list[Optional[str]] = [None] * (n * num_prompts)

        def chunk(choice: CompletionChoice) -> str:
            i = choice.index  # its prompt's counts and its own tokens so far
            usage = Usage.of(prompt_tokens[i // n], num_tokens[i], cached[i // n]) if continuous else None
            payload = CompletionResponse(id=request_id, created=created, model=model, choices=[choice],
                                         usage=usage).model_dump()
            if not include_usage:
                payload.pop("usage")
            return sse_event(payload)

        score_echo = req.echo and req.logprobs is not None  # the echo waits for the prompt's logprobs
        if req.echo and not score_echo:
            for i in range(n * num_prompts):
                if echo_texts[i // n]:
                    yield chunk(CompletionChoice(index=i, text=echo_texts[i // n]))
        try:
            async for position, out in merged:
                prompt_tokens[position], cached[position] = len(out.prompt_token_ids), out.num_cached_tokens
                if score_echo and out.prompt_logprobs is not None:
                    lp = echoed_prompt_logprobs(out.prompt_token_ids, out.prompt_logprobs, req.logprobs, token_text)
                    for i in range(position * n, position * n + n):
                        yield chunk(CompletionChoice(index=i, text=echo_texts[position], logprobs=lp))
                for c in out.outputs:
                    i = position * n + c.index
                    num_tokens[i] += len(c.delta_token_ids)
                    if c.finish_reason is not None:
                        finish[i] = c.finish_reason
                    if not c.delta_text and not c.delta_token_ids and c.finish_reason is None:
                        continue
                    lp = None
                    if req.logprobs is not None:
                        entries = c.logprobs or []
                        lp = completion_logprobs(entries, req.logprobs, token_text, text_offsets[i])
                    text_offsets[i] += len(c.delta_text)
                    yield chunk(CompletionChoice(index=i, text=c.delta_text, logprobs=lp,
                                                 finish_reason=c.finish_reason, stop_reason=c.stop_reason))
        except APIError as e:
            yield sse_event(e.to_response().model_dump())
            yield SSE_DONE
            return
        for position, timing in enumerate(timings):
            self.ctx.metrics.observe_finished(timing, finish[position * n] or "abort")
        if include_usage:
            completion_tokens = sum(num_tokens)
            usage = Usage.of(sum(prompt_tokens), completion_tokens, sum(cached))
            final = CompletionResponse(id=request_id, created=created, model=model, choices=[], usage=usage)
            yield sse_event(final.model_dump())
        yield SSE_DONE
