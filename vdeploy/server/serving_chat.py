"""/v1/chat/completions: messages -> chat template -> engine -> one answer or an SSE stream, with DeepSeek-R1's
reasoning split into `reasoning_content` / `reasoning`, and tool calls read from the answer (chat_tools.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from vdeploy.engine.outputs import RequestOutput
from vdeploy.engine.sampling_params import MAX_LOGPROBS
from vdeploy.engine.tokenizer import TEMPLATE_VARIABLES
from vdeploy.errors import ConfigError
from vdeploy.server.errors import APIError, invalid_param
from vdeploy.server.logprobs import TokenText, chat_logprobs, vllm_prompt_logprobs
from vdeploy.server.metrics import RequestTiming
from vdeploy.server.protocol import Usage, random_id
from vdeploy.server.protocol_chat import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatResponseMessage,
    ChatStreamChoice,
)
from vdeploy.server.chat_tools import ToolCallExtractor, adapt_messages, delta_groups, finish_reason
from vdeploy.server.guided_request import THINK_END, ToolPlan, tool_plan
from vdeploy.server.reasoning import ReasoningDelta, ReasoningParser
from vdeploy.server.serving_base import ServingContext
from vdeploy.server.streams import SSE_DONE, await_first_item, cancel_on_disconnect, sse_event, sse_response

MAX_TOP_LOGPROBS = MAX_LOGPROBS
NO_REASONING = ReasoningParser("none")


@dataclass(frozen=True)
class _Answer:
    """How one request's output becomes its answer: logprobs' top-k, tools (see ChatCompletions._tools) and the
    reasoning split that applies to this prompt."""

    top_k: int
    tools: tuple[ToolPlan, Any, tuple[str, ...]]
    reasoning: ReasoningParser


def _thinking_closed(prompt: str) -> bool:
    """The generation prompt already closed the think block (DeepSeek-V3.1 or Qwen3 with thinking off end it with
    `</think>`): there is nothing left to think, the whole output is the answer."""
    return prompt.rstrip().endswith(THINK_END)


def _template_messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    messages = []
    for m in req.messages:
        # "developer" is OpenAI's newer name for "system"; chat templates only know the latter
        role = "system" if m.role == "developer" else m.role
        entry: dict[str, Any] = {"role": role, "content": m.text()}
        if m.name:
            entry["name"] = m.name
        reasoning = m.reasoning_content or (m.model_extra or {}).get("reasoning")
        if isinstance(reasoning, str) and reasoning:  # templates of interleaved thinking (Qwen3) render past reasoning
            entry["reasoning_content"] = entry["reasoning"] = reasoning
        if m.tool_calls:
            entry["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            entry["tool_call_id"] = m.tool_call_id
        messages.append(entry)
    return messages


def refuse_request_chat_template(extra: Optional[dict[str, Any]]) -> None:
    """A request's own chat_template (vLLM's extension, off by default there too): ignoring it would render
    another prompt than the one asked for, so it is a 400 (chat and /tokenize alike)."""
    if (extra or {}).get("chat_template") is not None:
        raise invalid_param("chat_template in a request is not served: the server renders every conversation with "
                            "the model's template (start it with --chat-template FILE for another one)",
                            "chat_template", code="unsupported_value")


def _check_unsupported(req: ChatCompletionRequest) -> None:
    refuse_request_chat_template(req.model_extra)
    if req.top_logprobs is not None:
        if not req.logprobs:
            raise invalid_param("top_logprobs requires logprobs to be true", "top_logprobs")
        if not 0 <= req.top_logprobs <= MAX_TOP_LOGPROBS:
            raise invalid_param(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {req.top_logprobs}",
                                "top_logprobs")


def _merge(a: ReasoningDelta, b: ReasoningDelta) -> ReasoningDelta:
    return ReasoningDelta(
        reasoning=((a.reasoning or "") + (b.reasoning or "")) or None,
        content=((a.content or "") + (b.content or "")) or None,
    )


def _cut_after_final_message(prompt: str, final: str) -> str:
    """continue_final_message: the rendered conversation up to the end of the final message's text (what the
    template closes the turn with is cut, so the answer continues it). A template that trims content (Llama 3's
    `| trim`) renders the text without its surrounding whitespace: then that is what the answer continues, as
    transformers and vLLM do."""
    end = prompt.rfind(final)
    if end < 0 and final.strip():
        final = final.strip()
        end = prompt.rfind(final)
    if end < 0:
        raise invalid_param("continue_final_message: the chat template does not render the final message's text as "
                            "it is, so there is no end to continue from", "messages",
                            code="final_message_not_rendered")
    return prompt[: end + len(final)]


class ChatCompletions:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx

    async def create(self, raw: Request, req: ChatCompletionRequest) -> Any:
        ctx = self.ctx
        timing = RequestTiming(arrival=time.monotonic())
        lora_name = ctx.check_model(req.model)
        ctx.reject_unsupported(req)
        if (req.model_extra or {}).get("use_beam_search"):
            raise invalid_param("use_beam_search is served on /v1/completions (apply the chat template to the prompt)",
                                "use_beam_search", code="unsupported_value")
        _check_unsupported(req)
        plan = tool_plan(req.tools, req.tool_choice, (req.model_extra or {}).get("parallel_tool_calls"))
        # a long conversation takes milliseconds to render and tokenize: off the event loop, which serves everyone
        prompt, prompt_ids = await asyncio.to_thread(self._prompt, req, plan)
        reasoning = NO_REASONING if _thinking_closed(prompt) else ctx.reasoning
        guided = ctx.guided(req, plan, reasoning=reasoning.enabled)  # no think block left: the grammar starts at once
        limit = req.output_limit()
        explicit = limit is not None
        max_tokens = ctx.output_budget(len(prompt_ids), limit if explicit else ctx.default_max_tokens,
                                       explicit=explicit, prompt_param="messages")
        top_k = (req.top_logprobs or 0) if req.logprobs else 0
        ctx.check_fits_queue(req.n, "n")
        params = ctx.sampling_params(req, max_tokens=max_tokens, logprobs=top_k if req.logprobs else None)
        params.guided = guided
        answer = _Answer(top_k, self._tools(plan), reasoning)
        if answer.tools[1] is not None and answer.tools[1].needs_special_tokens:
            params.skip_special_tokens = False  # the call markers are special tokens

        request_id = random_id("chatcmpl")
        outputs = ctx.generate(prompt_ids, params, request_id, timing, lora_name=lora_name, cache_salt=req.cache_salt)
        if req.stream:
            outputs = await await_first_item(raw, outputs)
            return sse_response(self._stream(req, request_id, outputs, timing, answer, len(prompt_ids)))
        response = await cancel_on_disconnect(raw, self._collect(req, request_id, outputs, timing, answer))
        return JSONResponse(response.model_dump())

    def _tools(self, plan: ToolPlan) -> tuple[ToolPlan, Any, tuple[str, ...]]:
        """(the plan, the tool-call parser for tool_choice auto or None, texts to drop from the answer); named and
        required answers are plain JSON and need no parser."""
        if plan.mode != "auto":
            return plan, None, ()
        from vdeploy.server.tool_parsers import make_parser

        parser = make_parser(self.ctx.tool_call_parser_name())
        eos = getattr(self.ctx.tokenizer, "eos_token", None) if parser.needs_special_tokens else None
        return plan, parser, (eos,) if eos else ()

    @staticmethod
    def _extractor(tools: tuple[ToolPlan, Any, tuple[str, ...]]) -> ToolCallExtractor:
        return ToolCallExtractor(*tools)  # one per choice: it holds that choice's stream state

    def prompt_token_ids(self, req: ChatCompletionRequest, plan: ToolPlan) -> list[int]:
        """The conversation rendered with the chat template, as token ids (also what /tokenize counts)."""
        return self._prompt(req, plan)[1]

    def _prompt(self, req: ChatCompletionRequest, plan: ToolPlan) -> tuple[str, list[int]]:
        """(the conversation rendered with the chat template, its token ids)."""
        tokenizer = self.ctx.tokenizer
        messages = _template_messages(req)
        if plan.template_tools or any(m.tool_calls for m in req.messages):
            parser = self.ctx.tool_call_parser_name() if plan.template_tools else None
            messages = adapt_messages(messages, plan.template_tools, tokenizer.chat_template or "", parser)
        extra = req.chat_template_kwargs or {}
        taken = sorted(set(extra) & TEMPLATE_VARIABLES)
        if taken:
            raise invalid_param(f"chat_template_kwargs may not set {', '.join(taken)}: the server sets them",
                                "chat_template_kwargs")
        try:
            prompt = tokenizer.apply_chat_template(  # continuing the final message opens no new turn
                messages, add_generation_prompt=req.add_generation_prompt and not req.continue_final_message,
                tools=plan.template_tools, **extra)
        except ConfigError as e:
            raise invalid_param(e.message, "messages") from None
        if req.continue_final_message:
            prompt = _cut_after_final_message(prompt, req.messages[-1].text())
        # the template already placed BOS and the other special tokens
        return prompt, self.ctx.truncated(tokenizer.encode(prompt, add_special_tokens=False), req)

    async def _collect(
        self, req: ChatCompletionRequest, request_id: str, outputs: AsyncIterator[RequestOutput],
        timing: RequestTiming, answer: _Answer,
    ) -> ChatCompletionResponse:
        token_text = TokenText(self.ctx.tokenizer)
        texts = [""] * req.n
        num_tokens = [0] * req.n
        logprobs: list[list] = [[] for _ in range(req.n)]
        finish: list[Optional[str]] = [None] * req.n
        stop_reason: list[Any] = [None] * req.n
        prompt_tokens = cached = 0
        prompt_lp = None  # vLLM's prompt_logprobs, over the rendered conversation's tokens
        async for out in outputs:
            prompt_tokens, cached = len(out.prompt_token_ids), out.num_cached_tokens
            if out.prompt_logprobs is not None:
                prompt_lp = vllm_prompt_logprobs(out.prompt_logprobs, token_text)
            for c in out.outputs:
                texts[c.index] += c.delta_text
                num_tokens[c.index] += len(c.delta_token_ids)
                if req.logprobs:
                    logprobs[c.index].extend(c.logprobs or [])
                if c.finish_reason is not None:
                    finish[c.index], stop_reason[c.index] = c.finish_reason, c.stop_reason
        choices = []
        for i in range(req.n):
            # without a reasoning parser the text is the answer as it is (an empty answer stays "", not null)
            parser = answer.reasoning
            split = parser.split(texts[i]) if parser.enabled else ReasoningDelta(content=texts[i])
            content, calls = split.content, None
            extractor = self._extractor(answer.tools)
            if extractor.active:
                content, calls = extractor.final(split.content)
            message = ChatResponseMessage(content=content, reasoning_content=split.reasoning,
                                          reasoning=split.reasoning, tool_calls=calls)
            lp = chat_logprobs(logprobs[i], answer.top_k, token_text) if req.logprobs else None
            choices.append(ChatChoice(index=i, message=message, logprobs=lp,
                                      finish_reason=finish_reason(finish[i], calls), stop_reason=stop_reason[i]))
        completion_tokens = sum(num_tokens)
        self.ctx.metrics.observe_finished(timing, finish[0] or "abort")
        return ChatCompletionResponse(
            id=request_id,
            model=self.ctx.answer_model(req.model),
            choices=choices,
            usage=Usage.of(prompt_tokens, completion_tokens, cached),
            prompt_logprobs=prompt_lp,
        )

    async def _stream(
        self, req: ChatCompletionRequest, request_id: str, outputs: AsyncIterator[RequestOutput],
        timing: RequestTiming, answer: _Answer, prompt_tokens: int,
    ) -> AsyncIterator[str]:
        created = int(time.time())
        model = self.ctx.answer_model(req.model)
        token_text = TokenText(self.ctx.tokenizer)
        splitters = [answer.reasoning.new_stream() for _ in range(req.n)]
        extractors = [self._extractor(answer.tools) for _ in range(req.n)]
        num_tokens = [0] * req.n
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        continuous = bool(req.stream_options and req.stream_options.continuous)
        cached = 0

        def chunk(choice: ChatStreamChoice) -> str:
            payload = ChatCompletionChunk(id=request_id, created=created, model=model, choices=[choice]).model_dump(
                exclude={"usage"}
            )
            payload["choices"][0]["delta"] = choice.delta.model_dump(exclude_none=True)
            if include_usage:  # null, or with continuous_usage_stats the usage so far of this chunk's choice
                payload["usage"] = Usage.of(prompt_tokens, num_tokens[choice.index], cached).model_dump() \
                    if continuous else None
            return sse_event(payload)

        for i in range(req.n):
            yield chunk(ChatStreamChoice(index=i, delta=ChatDelta(role="assistant", content="")))
        first_finish: Optional[str] = None
        try:
            async for out in outputs:
                prompt_tokens, cached = len(out.prompt_token_ids), out.num_cached_tokens
                for c in out.outputs:
                    num_tokens[c.index] += len(c.delta_token_ids)
                    split = splitters[c.index].feed(c.delta_text)
                    if c.finish_reason is not None:
                        split = _merge(split, splitters[c.index].finish())
                        first_finish = first_finish or c.finish_reason
                    lp = None
                    if req.logprobs and c.delta_token_ids:
                        lp = chat_logprobs(c.logprobs or [], answer.top_k, token_text)
                    content, call_deltas, reason = split.content, [], c.finish_reason
                    extractor = extractors[c.index]
                    if extractor.active:
                        content, call_deltas = extractor.feed(split.content)
                        if c.finish_reason is not None:
                            more, final_deltas = extractor.finish()
                            content = ((content or "") + (more or "")) or None
                            call_deltas += final_deltas
                            reason = finish_reason(c.finish_reason, extractor.calls)
                    if not split.reasoning and not content and not call_deltas and lp is None and reason is None:
                        continue  # e.g. a token held back as a possible partial </think>
                    # one chunk per group of call deltas (a call's name and its first arguments go in two); the
                    # text and logprobs ride on the first, the finish reason on the last
                    groups = delta_groups(call_deltas) or [[]]
                    for g, calls in enumerate(groups):
                        first, last = g == 0, g == len(groups) - 1
                        delta = ChatDelta(content=content if first else None,
                                          reasoning_content=split.reasoning if first else None,
                                          reasoning=split.reasoning if first else None, tool_calls=calls or None)
                        yield chunk(ChatStreamChoice(index=c.index, delta=delta, logprobs=lp if first else None,
                                                     finish_reason=reason if last else None,
                                                     stop_reason=c.stop_reason if last else None))
        except APIError as e:  # headers are gone: report in-band, as OpenAI does
            yield sse_event(e.to_response().model_dump())
            yield SSE_DONE
            return
        self.ctx.metrics.observe_finished(timing, first_finish or "abort")
        if include_usage:
            completion_tokens = sum(num_tokens)
            usage = Usage.of(prompt_tokens, completion_tokens, cached)
            final = ChatCompletionChunk(id=request_id, created=created, model=model, choices=[], usage=usage)
            yield sse_event(final.model_dump())
        yield SSE_DONE
