"""Async plumbing shared by the endpoints: SSE framing and responses, racing a request against its client's
disconnect, and merging several engine streams (one per prompt of a batched /v1/completions call)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from vdeploy.server.errors import APIError

T = TypeVar("T")

SSE_DONE = "data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_response(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class ClientDisconnected(Exception):
    """The HTTP client went away before the answer was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    # The handler has already read the whole body, so the next ASGI message can only be the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it (and so aborting its engine request) if the client disconnects first.

    Starlette notices a disconnect only while it is streaming a response; this covers the time before that: the
    whole of a non-streamed request and the wait for a streamed request's first token.
    """
    work = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        watcher.cancel()
        raise
    if work in done:
        watcher.cancel()
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    raise ClientDisconnected()


async def prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def await_first_item(request: Request, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """`stream` with its first item already received (or the client gone: ClientDisconnected). Until a streamed
    response's headers are sent, an engine error (full queue, bad parameters) can still get its own HTTP status."""
    try:
        first = await cancel_on_disconnect(request, anext(stream))
    except StopAsyncIteration:
        raise APIError("the engine returned no output", status=500, type="server_error") from None
    return prepend(first, stream)


async def merge_streams(streams: list[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Items of all streams as they come, tagged with their stream's position. Closing the merged stream (or
    cancelling its consumer) closes every source stream, which aborts their engine requests."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any, BaseException | None, bool]] = asyncio.Queue()

    async def pump(position: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((position, item, None, False))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # forwarded to the consumer, which re-raises it
            await queue.put((position, None, e, True))
            return
        await queue.put((position, None, None, True))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            position, item, error, done = await queue.get()
            if error is not None:
                raise error
            if done:
                remaining -= 1
                continue
            yield position, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
