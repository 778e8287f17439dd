"""A scripted OpenAI-style streaming server for the serving-benchmark tests: a real aiohttp server on 127.0.0.1 that
answers /v1/models and streams /v1/completions as a list of (delay seconds, SSE payload) steps, so a test knows
exactly when each chunk left and what it carried (how vLLM's client would time it). It stands in for a third-party
endpoint, not for vdeploy code: the client under test (vdeploy.bench.serving) talks to it over real HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "model": "scripted",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}], "usage": None}


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "model": "scripted", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class ScriptedServer:
    """Every completion request streams `script` (the probe request too); `url` is the server root."""

    def __init__(self, script: list[tuple[float, dict[str, Any]]]):
        self.script = script
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the scripted server did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _serve(self) -> None:
        from aiohttp import web

        async def models(_request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

        async def completions(request: web.Request) -> web.StreamResponse:
            await request.json()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for delay, payload in self.script:
                await asyncio.sleep(delay)
                await response.write(f"data: {json.dumps(payload)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app)
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the ephemeral port
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
