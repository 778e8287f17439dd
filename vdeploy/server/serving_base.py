"""What both OpenAI endpoints share: the served model's names, request -> SamplingParams (with the model's
generation_config.json defaults), prompt-length checks, and the call into the engine that turns engine failures into
HTTP answers and aborts the engine request whenever its consumer stops early (client gone, error, shutdown)."""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, AsyncIterator, Optional

from vdeploy.engine.scheduler import QueueFull
from vdeploy.engine.streams import EngineDeadError, EngineShuttingDown
from vdeploy.engine.guided import InvalidGrammarError
from vdeploy.engine.outputs import OutputKind, RequestOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError
from vdeploy.server.errors import APIError, invalid_param
from vdeploy.server.metrics import RequestTiming, ServerMetrics
from vdeploy.server.protocol import MAX_CHOICES, SamplingFields
from vdeploy.server.reasoning import ReasoningParser

logger = logging.getLogger("vdeploy.server")

# request fields (OpenAI's, and vLLM's extensions) that change what the model must produce and are not served:
# ignoring them like other unknown fields would return a plausible but wrong answer, so a request that sets them is
# refused
UNSUPPORTED_FIELDS = ("logit_bias", "functions", "function_call", "prediction", "audio",
                      "allowed_token_ids", "bad_words", "logits_processors", "prompt_embeds", "structural_tag",
                      "return_tokens_as_token_ids")

# request field -> fallback when neither the request nor generation_config.json sets it
SAMPLING_FALLBACKS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


@dataclass(frozen=True)
class ServerSettings:
    served_model_names: tuple[str, ...]
    api_key: Optional[str] = None
    reasoning_parser: str = "none"
    model_path: Optional[str] = None  # shown as `root` in /v1/models
    # the deployment profile's sampling defaults (temperature, top_p, max_tokens); generation_config.json wins
    sampling_defaults: dict[str, Any] = field(default_factory=dict)
    tool_call_parser: Optional[str] = None  # None: the format the chat template shows (tool_parsers/)


class ServingContext:
    """One per app: the engine and everything the endpoint handlers need besides the request."""

    def __init__(self, engine: Any, settings: ServerSettings, metrics: ServerMetrics):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.reasoning = ReasoningParser(settings.reasoning_parser)

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """Defaults for fields a request leaves out: generation_config.json first, then the profile's sampling
        section (OpenAI's defaults, SAMPLING_FALLBACKS, apply below both)."""
        return {**self.settings.sampling_defaults, **(getattr(self.engine, "generation_defaults", None) or {})}

    @property
    def default_max_tokens(self) -> Optional[int]:
        return self.sampling_defaults.get("max_tokens")

    @property
    def model_name(self) -> str:
        return self.settings.served_model_names[0]

    def answer_model(self, requested: Optional[str]) -> str:
        """The `model` an answer carries: the name the client asked by (an alias, or a LoRA adapter, as vLLM
        answers), the first served name when it named none."""
        if requested is not None and (requested in self.settings.served_model_names
                                      or requested in self.lora_adapters):
            return requested
        return self.model_name

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def vocab_size(self) -> Optional[int]:
        """Valid token ids are [0, vocab_size): the smaller of the model's embedding and the tokenizer's vocabulary
        (an id past the embedding would crash the model, not just produce garbage)."""
        sizes = [getattr(self.tokenizer, "vocab_size", None),
                 getattr(getattr(self.engine, "model_config", None), "vocab_size", None)]
        known = [int(s) for s in sizes if s]
        return min(known) if known else None

    @property
    def max_model_len(self) -> int:
        return int(self.engine.max_model_len)

    # ---------------------------------------------------------------- validation

    def check_token_ids(self, ids: list[int], subject: str, param: str) -> None:
        """A client's token ids must name tokens of this model (a 400 otherwise)."""
        vocab = self.vocab_size
        if vocab is not None and any(not 0 <= t < vocab for t in ids):
            raise invalid_param(f"{subject} must be in [0, {vocab})", param)

    def check_fits_queue(self, num_seqs: int, param: str) -> None:
        """A request of more sequences than the waiting queue holds can never be admitted: a 400, not a 503 that
        tells the client to retry."""
        limit = getattr(self.engine, "max_waiting", None)
        if limit is not None and num_seqs > limit:
            raise invalid_param(f"the request asks for {num_seqs} sequences; this server queues at most {limit}",
                                param, code="too_many_sequences")

    @property
    def lora_adapters(self) -> dict[str, str]:
        """The engine's loaded LoRA adapters (name -> directory), servable by name in `model`."""
        return dict(getattr(self.engine, "lora_adapters", None) or {})

    def check_model(self, requested: Optional[str]) -> Optional[str]:
        """The LoRA adapter `requested` names (None: the base model); a 404-style error for an unknown name."""
        if requested is None or requested in self.settings.served_model_names:
            return None
        if requested in self.lora_adapters:
            return requested
        served = [*self.settings.served_model_names, *self.lora_adapters]
        raise APIError(  # 404, as OpenAI's API and vLLM answer an unknown model
            f"the model {requested!r} does not exist; this server serves {', '.join(served)}",
            status=HTTPStatus.NOT_FOUND,
            param="model",
            code="model_not_found",
        )

    def reject_unsupported(self, req: SamplingFields) -> None:
        for name in UNSUPPORTED_FIELDS:
            if (req.model_extra or {}).get(name):
                raise invalid_param(f"{name} is not supported by this server", name, code="unsupported_value")
        if req.stream_options is not None and not req.stream:  # OpenAI's and vLLM's 400: it would be ignored
            raise invalid_param("stream_options is only allowed when stream is true", "stream_options")
        if req.stream and req.prompt_logprobs is not None:  # as vLLM: they would arrive before any text
            raise invalid_param("prompt_logprobs is not supported when streaming", "prompt_logprobs",
                                code="unsupported_value")

    @staticmethod
    def truncated(prompt_ids: list[int], req: SamplingFields) -> list[int]:
        """vLLM's truncate_prompt_tokens: only the prompt's last k tokens."""
        k = req.truncate_prompt_tokens
        return prompt_ids[-k:] if k is not None else prompt_ids

    def output_budget(
        self, prompt_len: int, requested: Optional[int], *, explicit: bool, prompt_param: str
    ) -> int:
        """Tokens the request may generate. An explicit max_tokens that does not fit is an error; an implicit one
        (OpenAI's default 16, or no limit) is clamped to what is left of the context."""
        if requested is not None and requested < 1:
            raise invalid_param(f"max_tokens must be at least 1, got {requested}", "max_tokens")
        room = self.max_model_len - prompt_len
        if room < 1:
            raise invalid_param(
                f"this model's maximum context length is {self.max_model_len} tokens, but the prompt has "
                f"{prompt_len} tokens (no room left to generate)",
                prompt_param,
                code="context_length_exceeded",
            )
        if requested is None:
            return room
        if requested > room:
            if not explicit:
                return room
            raise invalid_param(
                f"this model's maximum context length is {self.max_model_len} tokens; the prompt has {prompt_len} "
                f"tokens and max_tokens asks for {requested} more",
                "max_tokens",
                code="context_length_exceeded",
            )
        return requested

    def tool_call_parser_name(self) -> str:
        from vdeploy.server.tool_parsers import default_tool_call_parser

        return self.settings.tool_call_parser or default_tool_call_parser(getattr(self.tokenizer, "chat_template", None))

    def guided(self, req: SamplingFields, plan: Any = None, reasoning: Optional[bool] = None) -> Any:
        """The request's GuidedDecoding (structured output, enforced tool calls) or None; a 400 when malformed.
        reasoning: whether the output starts with a think block (None: whenever a reasoning parser is on)."""
        from vdeploy.server.guided_request import guided_decoding

        return guided_decoding(req, plan, reasoning=self.reasoning.enabled if reasoning is None else reasoning)

    def sampling_params(self, req: SamplingFields, *, max_tokens: int, logprobs: Optional[int],
                        prompt_logprobs: Optional[int] = None) -> SamplingParams:
        """prompt_logprobs: the top-N each prompt position reports (None: the request's `prompt_logprobs`)."""
        if not 1 <= req.n <= MAX_CHOICES:
            raise invalid_param(f"n must be in [1, {MAX_CHOICES}], got {req.n}", "n")
        if req.min_tokens > max_tokens:  # a rule between two fields that no schema states: its own code
            raise invalid_param(f"min_tokens must be in [0, max_tokens], got {req.min_tokens} > {max_tokens}",
                                "min_tokens", code="min_tokens_above_max_tokens")
        self.check_token_ids(req.stop_token_ids or [], "stop_token_ids", "stop_token_ids")
        defaults = self.sampling_defaults
        picked = {}
        for name, fallback in SAMPLING_FALLBACKS.items():
            value = getattr(req, name)
            picked[name] = value if value is not None else defaults.get(name, fallback)
        try:
            return SamplingParams(
                n=req.n,
                seed=req.seed,
                max_tokens=max_tokens,
                min_tokens=req.min_tokens,
                stop=req.stop_list(),
                stop_token_ids=list(req.stop_token_ids or []),
                ignore_eos=req.ignore_eos,
                logprobs=logprobs,
                prompt_logprobs=req.prompt_logprobs if prompt_logprobs is None else prompt_logprobs,
                skip_special_tokens=req.skip_special_tokens,
                include_stop_str_in_output=req.include_stop_str_in_output,
                **picked,
            )
        except ConfigError as e:
            # SamplingParams messages start with the field name ("temperature must be in [0, 2], got 3.0")
            raise invalid_param(e.message, e.message.split(" ", 1)[0]) from None

    # ---------------------------------------------------------------- engine

    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str, timing: RequestTiming,
        lora_name: Optional[str] = None, cache_salt: Optional[str] = None,
    ) -> AsyncIterator[RequestOutput]:
        """The engine's outputs for one request, as deltas (OutputKind.DELTA: text, token ids and logprobs hold only
        what is new). Stopping early (disconnect, error) aborts the request, which frees its KV blocks; a full
        waiting queue is a 503 and invalid parameters a 400."""
        finished = False
        # deltas: the handlers keep what they need, so no step copies an answer however long it grows
        stream = self.engine.generate(prompt_token_ids, params, request_id, lora_name, OutputKind.DELTA, cache_salt)
        num_tokens: dict[int, int] = {}  # per sample
        try:
            async for output in stream:
                if timing.first_token is None and any(c.delta_token_ids for c in output.outputs):
                    timing.first_token = time.monotonic()
                for c in output.outputs:  # an output carries only the samples that changed
                    num_tokens[c.index] = num_tokens.get(c.index, 0) + len(c.delta_token_ids)
                timing.num_output_tokens = max(num_tokens.values(), default=0)
                if output.finished:
                    finished = True
                    timing.finished = time.monotonic()
                yield output
        except (QueueFull, EngineShuttingDown, EngineDeadError) as e:
            code = {QueueFull: "queue_full", EngineShuttingDown: "shutting_down"}.get(type(e), "engine_dead")
            raise APIError(
                f"service unavailable: {e.message}", status=HTTPStatus.SERVICE_UNAVAILABLE, type="server_error",
                code=code,
            ) from None
        except InvalidGrammarError as e:
            raise invalid_param(e.message, code="invalid_grammar") from None
        except ConfigError as e:
            raise invalid_param(e.message) from None
        finally:
            if not finished:
                await self._abort(request_id)
            await stream.aclose()

    async def _abort(self, request_id: str) -> None:
        try:
            result = self.engine.abort(request_id)
            if inspect.isawaitable(result):
                await result
        except Exception:  # aborting an already-finished request must never break the response path
            logger.debug("abort of %s failed", request_id, exc_info=True)
