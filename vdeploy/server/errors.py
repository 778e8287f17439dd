"""Every error the server sends has OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Bad input is a 4xx, never a 500: pydantic validation errors (FastAPI would answer 422) become 400, unknown routes
404, a full waiting queue 503. Only a bug in vdeploy itself reaches the catch-all (InternalErrorMiddleware), which
logs it, answers a 500 and keeps the server (and the engine) running.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vdeploy.server.protocol import ErrorInfo, ErrorResponse

logger = logging.getLogger("vdeploy.server")


class APIError(Exception):
    """An error answered to the client as-is."""

    def __init__(
        self,
        message: str,
        *,
        status: int = HTTPStatus.BAD_REQUEST,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = int(status)
        self.type = type
        self.param = param
        self.code = code

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.code))


def invalid_param(message: str, param: Optional[str] = None, code: str = "invalid_value") -> APIError:
    return APIError(message, param=param, code=code)


def error_json(error: APIError) -> JSONResponse:
    return JSONResponse(error.to_response().model_dump(), status_code=error.status)


def _type_for_status(status: int) -> str:
    if status == HTTPStatus.UNAUTHORIZED:
        return "authentication_error"
    if status == HTTPStatus.NOT_FOUND:
        return "not_found_error"
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        return "invalid_request_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _validation_message(exc: RequestValidationError) -> tuple[str, Optional[str]]:
    errors: list[dict[str, Any]] = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    # loc is ("body", "messages", 0, "role"); drop the "body" root so the param reads like OpenAI's
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {msg}", None
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_json(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_json(APIError(message, param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == HTTPStatus.NOT_FOUND and exc.detail == "Not Found":
            message = "no such route; see /openapi.json for the API"
        else:
            message = str(exc.detail)
        error = APIError(message, status=status, type=_type_for_status(status), code=HTTPStatus(status).phrase)
        return JSONResponse(error.to_response().model_dump(), status_code=status, headers=exc.headers)


def internal_error(exc: BaseException) -> APIError:
    return APIError(f"internal server error: {type(exc).__name__}: {exc}", status=HTTPStatus.INTERNAL_SERVER_ERROR,
                    type="server_error", code="internal_error")


class InternalErrorMiddleware:
    """The catch-all: an exception no handler took (a bug in vdeploy) is logged and answered with OpenAI's JSON 500.
    Plain ASGI, installed inside the error counter so the 500 is counted. Not Starlette's handler for Exception: that
    one answers from the outermost middleware and then re-raises, so the counter never saw the 500 and uvicorn
    dropped the connection, failing a keep-alive client's next request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.exception("internal error while serving a request")
            if not started:  # once a status is out (a stream), the connection can only be ended
                await error_json(internal_error(exc))(scope, receive, send)
