"""The FastAPI app: routes, API-key check, error shape, metrics. One app per engine, no shared state, so several
servers can live in one process (the tests run two)."""

from __future__ import annotations

import hmac
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from vdeploy import __version__
from vdeploy.engine.streams import EngineDeadError, EngineShuttingDown
from vdeploy.server.errors import APIError, InternalErrorMiddleware, install_error_handlers
from vdeploy.server.metrics import ServerMetrics
from vdeploy.server.openapi_doc import (
    METRICS_RESPONSES,
    error_responses,
    generation_responses,
    install_openapi,
    v1_responses,
)
from vdeploy.server.protocol import (
    CompletionRequest,
    CompletionResponse,
    LoadLoRAAdapterRequest,
    HealthStatus,
    ModelCard,
    ModelList,
    UnloadLoRAAdapterRequest,
)
from vdeploy.server.protocol_chat import ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse
from vdeploy.server.serving_base import ServerSettings, ServingContext
from vdeploy.server.serving_chat import ChatCompletions
from vdeploy.server.serving_completions import Completions
from vdeploy.server.serving_tokenize import (DetokenizeRequest, DetokenizeResponse, Tokenize, TokenizeRequest,
                                             TokenizeResponse)
from vdeploy.server.streams import ClientDisconnected

# Status sent for a request whose client is gone (nginx's convention); nobody reads it, the log does.
CLIENT_CLOSED_REQUEST = 499

KEYED_PATHS = ("/v1", "/tokenize", "/detokenize")  # what --api-key guards


class ApiKeyMiddleware:
    """Requires `Authorization: Bearer <key>` on the OpenAI routes (/v1/...) and /tokenize, /detokenize. /health,
    /version and /metrics stay open for load balancers and Prometheus. Plain ASGI (not BaseHTTPMiddleware) so streaming and disconnect
    detection pass through untouched."""

    def __init__(self, app: Any, api_key: str):
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(KEYED_PATHS) or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        error = APIError(
            "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
            status=HTTPStatus.UNAUTHORIZED,
            type="authentication_error",
            code="invalid_api_key",
        )
        response = JSONResponse(error.to_response().model_dump(), status_code=error.status,
                                headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class ErrorCounterMiddleware:
    """Counts answers with status >= 400 per status into the app's metrics."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.metrics.observe_error(message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(engine: Any, settings: ServerSettings) -> FastAPI:
    """`engine` implements the AsyncEngine interface; the caller owns it (starts and shuts it down)."""
    metrics = ServerMetrics.create(engine.stats, settings.served_model_names[0])
    ctx = ServingContext(engine, settings, metrics)
    chat = ChatCompletions(ctx)
    completions = Completions(ctx)
    tokenizing = Tokenize(ctx, chat)

    app = FastAPI(
        title="vdeploy",
        version=__version__,
        description="OpenAI-compatible API for models served by vdeploy.",
    )
    app.state.serving = ctx
    install_error_handlers(app)
    install_openapi(app, ctx.vocab_size, settings.served_model_names)
    keyed = bool(settings.api_key)

    @app.get("/health", summary="200 while the engine is serving", response_model=HealthStatus,
             responses=error_responses(503))
    async def health() -> Response:
        if not getattr(engine, "is_running", True):
            raise APIError("the engine has stopped", status=HTTPStatus.SERVICE_UNAVAILABLE, type="server_error",
                           code="engine_dead")
        return JSONResponse({"status": "ok"})

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=METRICS_RESPONSES)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def model_card(name: str) -> ModelCard:
        return ModelCard(id=name, root=settings.model_path or name, max_model_len=ctx.max_model_len,
                         vocab_size=ctx.vocab_size)

    def lora_cards() -> list[ModelCard]:
        return [ModelCard(id=name, root=path, parent=settings.served_model_names[0], max_model_len=ctx.max_model_len,
                          vocab_size=ctx.vocab_size) for name, path in ctx.lora_adapters.items()]

    @app.get("/v1/models", response_model=ModelList, responses=v1_responses(keyed))
    async def list_models() -> ModelList:
        return ModelList(data=[model_card(name) for name in settings.served_model_names] + lora_cards())

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=v1_responses(keyed, 404))
    async def get_model(model_id: str) -> ModelCard:
        lora = next((card for card in lora_cards() if card.id == model_id), None)
        if lora is not None:
            return lora
        if model_id not in settings.served_model_names:
            raise APIError(f"the model {model_id!r} does not exist", status=HTTPStatus.NOT_FOUND,
                           type="not_found_error", param="model", code="model_not_found")
        return model_card(model_id)

    lora_responses = {**v1_responses(keyed, 400, 404), 200: {
        "description": "A one-line confirmation", "content": {"text/plain": {"schema": {"type": "string"}}}}}

    @app.post("/v1/load_lora_adapter", summary="Load a PEFT LoRA adapter, then serve it as `model`",
              responses=lora_responses)
    async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> Response:
        if body.lora_name in settings.served_model_names:
            raise APIError(f"{body.lora_name!r} is the base model's name", param="lora_name", code="name_taken")
        await lora_call(engine.load_lora(body.lora_name, body.lora_path))
        return Response(f"Success: LoRA adapter '{body.lora_name}' added successfully.", media_type="text/plain")

    @app.post("/v1/unload_lora_adapter", summary="Stop serving a LoRA adapter", responses=lora_responses)
    async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> Response:
        await lora_call(engine.unload_lora(body.lora_name))
        return Response(f"Success: LoRA adapter '{body.lora_name}' removed successfully.", media_type="text/plain")

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse,
              responses=generation_responses(keyed, ChatCompletionChunk))
    async def create_chat_completion(request: Request, body: ChatCompletionRequest) -> Response:
        try:
            return await chat.create(request, body)
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.post("/v1/completions", response_model=CompletionResponse,
              responses=generation_responses(keyed, CompletionResponse))
    async def create_completion(request: Request, body: CompletionRequest) -> Response:
        try:
            return await completions.create(request, body)
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.post("/tokenize", summary="A prompt or a conversation (rendered as for chat) to token ids (vLLM's)",
              response_model=TokenizeResponse, responses=v1_responses(keyed, 400, 404))
    async def tokenize(body: TokenizeRequest) -> TokenizeResponse:
        return await tokenizing.tokenize(body)

    @app.post("/detokenize", summary="Token ids to text (vLLM's)", response_model=DetokenizeResponse,
              responses=v1_responses(keyed, 400, 404))
    async def detokenize(body: DetokenizeRequest) -> DetokenizeResponse:
        return await tokenizing.detokenize(body)

    async def lora_call(call) -> None:
        from vdeploy.errors import VdeployError
        from vdeploy.lora.registry import LoRANotFoundError

        if not hasattr(engine, "load_lora"):
            call.close()
            raise APIError("this engine cannot load LoRA adapters", code="lora_unsupported")
        try:
            await call
        except LoRANotFoundError as e:
            raise APIError(e.message, status=HTTPStatus.NOT_FOUND, type="not_found_error", param="lora_name",
                           code="lora_not_found") from None
        except (EngineShuttingDown, EngineDeadError) as e:
            raise APIError(f"service unavailable: {e.message}", status=HTTPStatus.SERVICE_UNAVAILABLE,
                           type="server_error", code="engine_dead") from None
        except VdeployError as e:  # a refused adapter (rank, targets, shapes, path), or LoRA not enabled
            message = f"{e.message} ({e.hint})" if e.hint else e.message
            raise APIError(message, param="lora_path", code="invalid_lora_adapter") from None

    # the last middleware added is the outermost: count errors around the key check so 401s are counted too,
    # and around the catch-all so 500s are
    app.add_middleware(InternalErrorMiddleware)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(ErrorCounterMiddleware, metrics=metrics)
    return app
