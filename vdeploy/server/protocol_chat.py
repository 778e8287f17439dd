"""OpenAI-compatible request and response schemas of /v1/chat/completions (pydantic); the shared parts (sampling
fields, usage, completions' logprobs) are in vdeploy.server.protocol, with the same rules for unset and unknown
fields."""

from __future__ import annotations

import time
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from vdeploy.engine.sampling_params import MAX_LOGPROBS
from vdeploy.engine.tokenizer import TEMPLATE_VARIABLES
from vdeploy.server.protocol import OpenAIModel, PromptLogprobs, ResponseFormat, SamplingFields, Usage, random_id

_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "parameters": {"type": "object", "description": "a JSON schema of the arguments"},
        }},
    },
    "required": ["function"],
}
# names a function of `tools` (which one cannot be checked by a schema: see openapi_doc.STATEFUL_REFUSALS)
_NAMED_TOOL_CHOICE_SCHEMA = {
    "type": "object", "required": ["function"],
    "properties": {"type": {"const": "function"}, "function": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}},
}


class TextContentPart(OpenAIModel):
    type: Literal["text"]
    text: str


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, list[TextContentPart]]] = None
    name: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[dict[str, Any]]] = None  # an assistant turn's calls, as OpenAI returned them
    tool_call_id: Optional[str] = None  # role "tool": the call this message answers

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)  # as vLLM joins text parts: never glued into one word


class ChatCompletionRequest(SamplingFields):
    # the combinations the server refuses, as the schema states them: top_logprobs needs logprobs: true (as with
    # OpenAI); a tool_choice other than none/auto needs tools. Keep this list short: with one more if/then rule
    # (plus the guided-decoding one added to the document) schemathesis's canonicaliser gives up on this request
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"allOf": [
        {"if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}},
         "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}},
        {"if": {"required": ["tool_choice"], "properties": {"tool_choice": {"not": {"enum": ["none", "auto", None]}}}},
         "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}},
        {"if": {"required": ["stream"], "properties": {"stream": {"const": True}}},
         "then": {"properties": {"prompt_logprobs": {"type": "null"}}},
         "else": {"properties": {"stream_options": {"type": "null"}}}},
    ]})
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)  # deprecated by OpenAI for max_completion_tokens; both accepted
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: Optional[ResponseFormat] = None
    # dicts as OpenAI sends them (vdeploy.server.guided_request checks them); the schema says what it accepts
    tools: Optional[list[dict[str, Any]]] = Field(None, json_schema_extra={"anyOf": [
        {"type": "array", "items": _TOOL_SCHEMA}, {"type": "null"}]})
    tool_choice: Optional[Union[str, dict[str, Any]]] = Field(None, json_schema_extra={"anyOf": [
        {"enum": ["none", "auto", "required"]}, _NAMED_TOOL_CHOICE_SCHEMA, {"type": "null"}]})
    add_generation_prompt: bool = True
    # vLLM's: the answer continues the final (assistant) message instead of starting a new turn (a prefilled
    # answer, e.g. "<think>\n" or "{"); no generation prompt is added then, whatever add_generation_prompt says
    continue_final_message: bool = False
    # vLLM's extension: more variables for the chat template, e.g. DeepSeek-V3.1's {"thinking": true} or Qwen3's
    # {"enable_thinking": false}; the names the server itself passes are refused
    chat_template_kwargs: Optional[dict[str, Any]] = Field(None, json_schema_extra={"anyOf": [
        {"type": "object", "propertyNames": {"not": {"enum": sorted(TEMPLATE_VARIABLES)}}}, {"type": "null"}]})

    def output_limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatChoiceLogprobs(BaseModel):
    content: Optional[list[TokenLogprob]] = None


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: Optional[str] = None
    # DeepSeek's field name, and the newer name that recent OpenAI-compatible clients read
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: Optional[list[dict[str, Any]]] = None  # [{"id", "type": "function", "function": {name, arguments}}]


class ChatChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    logprobs: Optional[ChatChoiceLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Optional[Union[int, str]] = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: Optional[str] = None
    prompt_logprobs: Optional[PromptLogprobs] = None  # asked for with `prompt_logprobs` (vLLM)


class ChatDelta(BaseModel):
    role: Optional[Literal["assistant"]] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: Optional[list[dict[str, Any]]] = None  # OpenAI's deltas: the first of a call has index, id, name


class ChatStreamChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: Optional[ChatChoiceLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Optional[Union[int, str]] = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatStreamChoice]
    usage: Optional[Usage] = None
