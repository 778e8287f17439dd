"""OpenAI-compatible request and response schemas (pydantic): what /v1/completions and /v1/chat/completions share,
the completions route's own, /v1/models and errors (the chat route's: vdeploy.server.protocol_chat).

Request fields that a request leaves out stay `None`, so the server can tell "not set" from "set to the OpenAI
default" and fill unset sampling fields from the model's generation_config.json instead. Unknown fields are accepted
and ignored (OpenAI clients send newer fields than any server knows); fields that would silently change the meaning
of a request (e.g. logit_bias) are rejected explicitly by the serving layer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vdeploy.engine.sampling_params import MAX_LOGPROBS, PENALTY_RANGE, TEMPERATURE_MAX

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_CHOICES = 128  # n beyond this is almost certainly a mistake and would flood the batch (OpenAI's limit too)


def random_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class OpenAIModel(BaseModel):
    # strict: a value of the wrong JSON type is refused as the schema says (0 is not false, "1" is not 1)
    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats_are_integers(cls, data: Any) -> Any:
        """JSON has one number type: 2.0 is a valid "integer" by JSON Schema, so it must be one here too."""
        return _integral_to_int(data)


# ---------------------------------------------------------------- shared request parts


def _integral_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_to_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_to_int(v) for v in value]
    return value


class StreamOptions(OpenAIModel):
    include_usage: bool = False
    # vLLM's: with include_usage, every chunk also carries the usage so far (its choice's tokens)
    continuous_usage_stats: bool = False

    @property
    def continuous(self) -> bool:
        return self.include_usage and self.continuous_usage_stats


class JsonSchemaFormat(OpenAIModel):
    name: str = Field(min_length=1, max_length=64)
    description: Optional[str] = None
    schema_: dict[str, Any] = Field(alias="schema")  # the server needs it to constrain the answer
    strict: Optional[bool] = None


class ResponseFormat(OpenAIModel):
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={
        "if": {"required": ["type"], "properties": {"type": {"const": "json_schema"}}},
        "then": {"required": ["json_schema"], "properties": {"json_schema": {"type": "object"}}}})
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None

    @model_validator(mode="after")
    def _schema_when_json_schema(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema is required when type is 'json_schema'")
        return self


class SamplingFields(OpenAIModel):
    """Sampling fields shared by both endpoints (OpenAI's plus vLLM's common extensions)."""

    # The bounds below are the ones the server enforces (vdeploy.engine.sampling_params), published in the schema.
    model: Optional[str] = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    temperature: Optional[float] = Field(None, ge=0.0, le=TEMPERATURE_MAX)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=-1, le=INT32_MAX)  # -1 or 0: off; past the vocabulary: all of it
    min_p: Optional[float] = Field(None, ge=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=INT64_MIN, le=INT64_MAX)  # what a device generator and the core's wire take
    presence_penalty: Optional[float] = Field(None, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])
    frequency_penalty: Optional[float] = Field(None, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])
    repetition_penalty: Optional[float] = Field(None, gt=0.0)
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # vLLM's extension: each prompt token's logprob and the top-N there, in the response's `prompt_logprobs`
    # (not with streaming, as vLLM)
    prompt_logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)
    truncate_prompt_tokens: Optional[int] = Field(None, ge=1)  # vLLM's: keep only the prompt's last k tokens
    # vLLM's: prefix-cache blocks are shared only between requests of the same salt (one per tenant, say)
    cache_salt: Optional[str] = Field(None, min_length=1)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# ---------------------------------------------------------------- /v1/completions


class CompletionRequest(SamplingFields):
    # the combinations the server refuses, as the schema states them (best_of other than n cannot be: see
    # vdeploy.server.openapi_doc.STATEFUL_REFUSALS)
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"allOf": [
        {"if": {"required": ["stream"], "properties": {"stream": {"const": True}}},
         "then": {"properties": {"prompt_logprobs": {"type": "null"}}},
         "else": {"properties": {"stream_options": {"type": "null"}}}},
        {"if": {"required": ["use_beam_search"], "properties": {"use_beam_search": {"const": True}}},
         "then": {"properties": {"logprobs": {"type": "null"}, "stream": {"const": False},
                                 "stop": {"anyOf": [{"type": "null"}, {"const": ""}, {"const": []}]},
                                 "stop_token_ids": {"anyOf": [{"type": "null"}, {"const": []}]},
                                 "response_format": {"type": "null"}, "guided_json": {"type": "null"},
                                 "prompt_logprobs": {"type": "null"}, "structured_outputs": {"type": "null"},
                                 "guided_regex": {"type": "null"}, "guided_choice": {"type": "null"},
                                 "guided_grammar": {"type": "null"}}}},
    ]})
    # a text, texts, token ids or lists of token ids; never empty (there would be nothing to continue)
    prompt: Union[str, list[str], list[int], list[list[int]]] = Field(
        json_schema_extra={"anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
             "minItems": 1},
        ]})
    max_tokens: Optional[int] = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)  # top-k alternatives (0 = the sampled token)
    echo: bool = False
    response_format: Optional[ResponseFormat] = None  # structured output, as on chat (vLLM accepts it here too)
    suffix: Optional[str] = Field(None, max_length=0)  # not supported: only empty
    best_of: Optional[int] = Field(None, ge=1)  # only equal to n
    # vLLM's beam search extension (extra_body): n is the beam width
    use_beam_search: bool = False
    length_penalty: float = 1.0
    early_stopping: Union[bool, Literal["never"]] = False


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[Optional[float]] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[Optional[dict[str, float]]] = Field(default_factory=list)


class PromptLogprob(BaseModel):
    """vLLM's shape of one entry of `prompt_logprobs` (keyed by token id)."""

    logprob: float
    rank: Optional[int] = None
    decoded_token: str


PromptLogprobs = list[Optional[dict[str, PromptLogprob]]]  # per prompt token; None for the first


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: Optional[CompletionLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Optional[Union[int, str]] = None
    prompt_logprobs: Optional[PromptLogprobs] = None  # asked for with `prompt_logprobs` (vLLM)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: Optional[PromptTokensDetails] = None

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> "Usage":
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens))


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = None
    system_fingerprint: Optional[str] = None


# ---------------------------------------------------------------- /v1/models, errors


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "vdeploy"
    root: Optional[str] = None
    parent: Optional[str] = None  # a LoRA adapter's base model
    max_model_len: Optional[int] = None
    vocab_size: Optional[int] = None  # vdeploy extension: lets `vdeploy bench --url` draw valid token-id prompts


class LoadLoRAAdapterRequest(OpenAIModel):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadLoRAAdapterRequest(OpenAIModel):
    lora_name: str = Field(min_length=1)
    lora_int_id: Optional[int] = None  # vLLM sends it; vdeploy goes by the name


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[Union[str, int]] = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"
