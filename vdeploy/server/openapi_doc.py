"""What /openapi.json says the server answers, kept true to what it does: every error status a route can send with
OpenAI's error body, streamed answers as text/event-stream, /metrics as Prometheus text, and no 422 (a request
that fails validation is a 400, vdeploy.server.errors). tests/server/test_openapi_schemathesis.py holds the server
to this document."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from vdeploy.server.protocol import CompletionResponse, ErrorResponse
from vdeploy.server.protocol_chat import ChatCompletionChunk

# (param, code) of the 400s a schema-valid request can still get, because no JSON schema can state the rule: the
# prompt plus max_tokens longer than the context (the prompt's token count), best_of other than n, a tool_choice
# naming a function that is not in tools, min_tokens above max_tokens, a grammar the compiler does not support.
# Each has its own code in the error body.
STATEFUL_REFUSALS = frozenset({
    ("max_tokens", "context_length_exceeded"),
    ("prompt", "context_length_exceeded"),
    ("messages", "context_length_exceeded"),
    ("best_of", "unsupported_value"),
    ("tool_choice", "unknown_tool"),
    ("min_tokens", "min_tokens_above_max_tokens"),
    ("messages", "final_message_not_rendered"),  # continue_final_message with a template that rewrites the text
    (None, "invalid_grammar"),  # a regex / grammar / JSON schema that xgrammar cannot compile
    # guided_json / structured_outputs.json as a string must hold JSON: the document says so (contentMediaType),
    # which JSON Schema validators treat as an annotation only
    ("guided_json", "invalid_json"),
    ("structured_outputs.json", "invalid_json"),
    # runtime LoRA: what the server was started with and what lies on its disk
    ("lora_path", "invalid_lora_adapter"),  # LoRA not enabled, no adapter at the path, rank or targets refused
    ("lora_name", "name_taken"),  # the base model's served name
    (None, "lora_unsupported"),  # an engine without adapter slots
})

_WHY = {
    400: "Invalid request: a field out of its bounds, an unsupported option, a prompt longer than the context",
    401: "Missing or wrong 'Authorization: Bearer <key>' (only when the server runs with --api-key)",
    404: "Unknown model (or route)",
    500: "A bug in vdeploy: the request failed, the server keeps running",
    503: "The engine cannot take the request: waiting queue full, shutting down (drain), or stopped after an error",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` entries for error statuses, each with OpenAI's error body."""
    return {status: {"model": ErrorResponse, "description": _WHY[status]} for status in statuses}


def generation_responses(api_key: bool, chunk: type) -> dict[int | str, dict[str, Any]]:
    """The answers of /v1/chat/completions and /v1/completions beyond the JSON 200: with stream=true, server-sent
    events whose data is a `chunk` (a pydantic model) or, after the first chunk, an in-band error; then [DONE]."""
    chunk_ref = {"$ref": f"#/components/schemas/{chunk.__name__}"}
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"anyOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"anyOf": [chunk_ref, error_ref]}},
        ]}},
        "description": "With stream=true: one event per chunk, then `data: [DONE]`; an error after the first chunk "
                       "is an in-band `data: {\"error\": {...}}` event before [DONE].",
    }
    streamed = {200: {"content": {"text/event-stream": {"schema": event}}}}
    return {**streamed, **error_responses(*_with_key(api_key, 400, 404, 500, 503))}


def add_models(schema: dict[str, Any], *models: type) -> dict[str, Any]:
    """Component schemas for models only events refer to (FastAPI adds those of request and response bodies)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in generated.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, generated)
    return schema


def _with_key(api_key: bool, *statuses: int) -> tuple[int, ...]:
    return tuple(sorted({*statuses, *((HTTPStatus.UNAUTHORIZED.value,) if api_key else ())}))


def v1_responses(api_key: bool, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error answers of a /v1 route that is not a generation (401 only behind --api-key)."""
    return error_responses(*_with_key(api_key, *statuses))


METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}


def drop_validation_422(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 for every route with a body or parameters; vdeploy answers 400 instead (and says
    so), so the 422 and its HTTPValidationError schemas are removed."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def limit_token_ids(schema: dict[str, Any], vocab_size: int | None) -> dict[str, Any]:
    """A prompt of token ids must name tokens of this model: the served vocabulary's bound goes in the document."""
    if vocab_size is None:
        return schema
    components = schema.get("components", {}).get("schemas", {})
    prompt = components.get("CompletionRequest", {}).get("properties", {}).get("prompt", {})
    for variant in prompt.get("anyOf", []):
        items = variant.get("items", {})
        ids = items.get("items", items)  # list[int] or list[list[int]]
        if ids.get("type") == "integer":
            ids["maximum"] = vocab_size - 1
    tokens = components.get("DetokenizeRequest", {}).get("properties", {}).get("tokens", {})
    if tokens.get("items", {}).get("type") == "integer":
        tokens["items"]["maximum"] = vocab_size - 1
    return schema


def name_served_models(schema: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """`model` must be one of the served names (another is refused with model_not_found)."""
    for request in ("CompletionRequest", "ChatCompletionRequest", "TokenizeRequest", "DetokenizeRequest"):
        properties = schema.get("components", {}).get("schemas", {}).get(request, {}).get("properties", {})
        if "model" in properties:
            properties["model"] = {"anyOf": [{"enum": list(names)}, {"type": "null"}], "title": "Model",
                                   "description": "One of the served model names (GET /v1/models)."}
    return schema


def document_guided_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """vLLM's structured-output extras (structured_outputs, guided_*: vdeploy.server.structured_output_fields) and
    the one-constraint rule, on both requests."""
    from vdeploy.server.guided_request import one_output_constraint_schema
    from vdeploy.server.structured_output_fields import FIELD_SCHEMAS

    components = schema.get("components", {}).get("schemas", {})
    for request, with_tools in (("CompletionRequest", False), ("ChatCompletionRequest", True)):
        definition = components.get(request)
        if definition is None:
            continue
        definition.setdefault("properties", {}).update(FIELD_SCHEMAS)
        definition.setdefault("allOf", []).append(one_output_constraint_schema(with_tools))
    return schema


def install_openapi(app: Any, vocab_size: int | None, served_names: tuple[str, ...]) -> None:
    """Replace app.openapi with the generated document minus FastAPI's 422s, with the served model's names and
    token-id bound (built once, then cached)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = drop_validation_422(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
            schema = document_guided_fields(add_models(schema, ChatCompletionChunk, CompletionResponse))
            app.openapi_schema = name_served_models(limit_token_ids(schema, vocab_size), served_names)
        return app.openapi_schema

    app.openapi = openapi
