"""vLLM's /tokenize and /detokenize: a prompt, or a conversation rendered with the chat template exactly as
/v1/chat/completions renders it (tools and chat_template_kwargs included), to the model's token ids and their count
beside the context length; token ids back to text. Clients count tokens and check a prompt's fit with them."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from vdeploy.server.errors import invalid_param
from vdeploy.server.guided_request import tool_plan
from vdeploy.server.protocol import OpenAIModel
from vdeploy.server.protocol_chat import ChatCompletionRequest, ChatMessage
from vdeploy.server.serving_base import ServingContext
from vdeploy.server.serving_chat import ChatCompletions, refuse_request_chat_template

_CHAT_FIELDS = ChatCompletionRequest.model_fields


class TokenizeRequest(OpenAIModel):
    # a prompt or a conversation, not both
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"oneOf": [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
    ]})
    model: Optional[str] = None
    prompt: Optional[str] = None
    add_special_tokens: bool = True  # a prompt's (a conversation's template places its own)
    messages: Optional[list[ChatMessage]] = Field(None, min_length=1)
    add_generation_prompt: bool = True
    continue_final_message: bool = False  # as on the chat route: a prefilled answer is counted as chat renders it
    # as the chat route states them
    tools: Optional[list[dict[str, Any]]] = Field(None, json_schema_extra=_CHAT_FIELDS["tools"].json_schema_extra)
    chat_template_kwargs: Optional[dict[str, Any]] = Field(
        None, json_schema_extra=_CHAT_FIELDS["chat_template_kwargs"].json_schema_extra)
    return_token_strs: bool = False


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: Optional[list[str]] = None  # the vocabulary's pieces, with return_token_strs


class DetokenizeRequest(OpenAIModel):
    model: Optional[str] = None
    tokens: list[int] = Field(json_schema_extra={"items": {"type": "integer", "minimum": 0}})


class DetokenizeResponse(BaseModel):
    prompt: str


class Tokenize:
    def __init__(self, ctx: ServingContext, chat: ChatCompletions):
        self.ctx, self.chat = ctx, chat

    async def tokenize(self, req: TokenizeRequest) -> TokenizeResponse:
        ctx = self.ctx
        ctx.check_model(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise invalid_param("give either prompt or messages", "prompt" if req.prompt is None else "messages")
        if req.messages is not None:
            refuse_request_chat_template(req.model_extra)  # counted as chat renders it, or not at all
            as_chat = ChatCompletionRequest(messages=req.messages, add_generation_prompt=req.add_generation_prompt,
                                            continue_final_message=req.continue_final_message,
                                            tools=req.tools, chat_template_kwargs=req.chat_template_kwargs)
            plan = tool_plan(req.tools, None)
            ids = await asyncio.to_thread(self.chat.prompt_token_ids, as_chat, plan)
        else:
            ids = await asyncio.to_thread(ctx.tokenizer.encode, req.prompt, req.add_special_tokens)
        pieces = [ctx.tokenizer.id_to_token(t) or "" for t in ids] if req.return_token_strs else None
        return TokenizeResponse(count=len(ids), max_model_len=ctx.max_model_len, tokens=ids, token_strs=pieces)

    async def detokenize(self, req: DetokenizeRequest) -> DetokenizeResponse:
        ctx = self.ctx
        ctx.check_model(req.model)
        ctx.check_token_ids(req.tokens, "tokens", "tokens")
        # special tokens kept, as vLLM's route does: /tokenize's ids of a chat prompt come back as that prompt
        return DetokenizeResponse(prompt=await asyncio.to_thread(ctx.tokenizer.decode, req.tokens, False))
