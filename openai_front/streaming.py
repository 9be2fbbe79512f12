"""Answering a chat request: the decision to commit a stream, keep-alives while it waits, and what
happens when the client goes away at any moment (nothing held is ever left behind).

A stream whose answer has not begun within one keep-alive interval is committed: 200 now, SSE comments
while it waits, any later error in-band. Until then, and always for non-streaming requests, errors are
real HTTP statuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Coroutine, Protocol

from fastapi import Request
from fastapi.responses import Response
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from openai_front.errors import APIError
from openai_front.protocol import ChatCompletionRequest
from openai_front.serving_chat import ChatService
from relay.engine import Replay
from relay.requestlog import RequestRecord

log = logging.getLogger(__name__)

CLIENT_GONE = 499  # nginx's status for a client that closed the connection first


class LeanEventSourceResponse(EventSourceResponse):
    """sse-starlette's response, without a cancel scope around each send when there is no send timeout
    (anyio's scope per event was a tenth of the stream's CPU); with one, its own behaviour."""

    async def _send_with_timeout(self, send: Any, message: Any) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


class Call(Protocol):
    """One chat request as an API surface serves it (OpenAI chat completions, Anthropic messages)."""

    stream: bool
    model: str

    def start(self, record: RequestRecord) -> Coroutine[Any, Any, Replay]: ...

    def abandon(self, replay: Replay) -> None: ...

    async def complete(self, replay: Replay) -> Any: ...

    def events(self, replay: Replay) -> AsyncIterator[bytes]:
        """The answer as SSE events, each framed."""
        ...

    def failed(self, error: APIError) -> bytes:
        """The SSE events that end a committed stream whose answer never began."""
        ...


async def answer(call: Call, request: Request, record: RequestRecord, keepalive: float) -> Any:
    """Serve `call`: a real status until a stream's answer begins or one keep-alive interval passes."""
    pending = PendingStart(call, call.start(record))
    gone = asyncio.get_running_loop().create_task(disconnected(request))
    try:
        done, _ = await asyncio.wait({pending.task, gone}, timeout=keepalive if call.stream else None,
                                     return_when=asyncio.FIRST_COMPLETED)
        if pending.task not in done and gone in done:
            await pending.cancel()
            record.close(CLIENT_GONE, "the client went away while waiting", "client")
            return Response(status_code=CLIENT_GONE)
        replay: Replay | None = None
        if pending.task in done:
            try:
                replay = pending.claim_now()
            except APIError as e:
                record.close(e.status, e.message, e.source)
                raise
            if not call.stream:
                return await unless_gone(call.complete(replay), gone, record)
    finally:
        gone.cancel()
    return LeanEventSourceResponse(_events(call, pending, replay, record), ping=keepalive,
                                   headers={"Cache-Control": "no-cache"})


async def _events(
    call: Call, pending: PendingStart, replay: Replay | None, record: RequestRecord
) -> AsyncIterator[bytes | ServerSentEvent]:
    try:
        if replay is None:
            # committed before the answer began: say so at once, then keep-alives until it does
            yield ServerSentEvent(comment=f"waiting for a conversation of {call.model}")
            try:
                replay = await pending.claim()
            except APIError as e:
                record.close(e.status, e.message, e.source)
                yield call.failed(e)
                return
        async for event in call.events(replay):
            yield event
    except asyncio.CancelledError:
        await pending.cancel()
        record.close(CLIENT_GONE, "the client went away", "client")
        log.info("client went away during a %s request", call.model)
        raise


class ChatCall:
    """A chat completion (OpenAI)."""

    def __init__(self, chat: ChatService, body: ChatCompletionRequest) -> None:
        self.chat, self.body = chat, body
        self.stream, self.model = body.stream, body.model

    def start(self, record: RequestRecord) -> Coroutine[Any, Any, Replay]:
        return self.chat.start(self.body, record)

    def abandon(self, replay: Replay) -> None:
        self.chat.abandon(replay)

    async def complete(self, replay: Replay) -> Any:
        return await self.chat.complete(replay)

    async def events(self, replay: Replay) -> AsyncIterator[bytes]:
        include_usage = bool(self.body.stream_options and self.body.stream_options.include_usage)
        async for chunk in self.chat.stream(replay, include_usage):
            yield b"data: " + chunk + b"\r\n\r\n"
        yield DONE

    def failed(self, error: APIError) -> bytes:
        return sse_data(error.body()) + DONE


async def answer_chat(
    chat: ChatService, body: ChatCompletionRequest, request: Request, record: RequestRecord, keepalive: float
) -> Any:
    return await answer(ChatCall(chat, body), request, record, keepalive)


DONE = b"data: [DONE]\r\n\r\n"


def sse_data(value: Any) -> bytes:
    """One SSE event carrying `value` as JSON, encoded here once (what sse-starlette sends as it is)."""
    return b"data: " + json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\r\n\r\n"


async def disconnected(request: Request) -> None:
    """Returns when the client has gone away (the request body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_gone(work: Coroutine[Any, Any, Any], gone: asyncio.Future[None], record: RequestRecord) -> Any:
    """Run `work` unless the client disconnects first; then stop it (freeing what it holds)."""
    task = asyncio.get_running_loop().create_task(work)
    done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        try:
            return task.result()
        except APIError as e:
            record.close(e.status, e.message, e.source)
            raise
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    record.close(CLIENT_GONE, "the client went away", "client")
    return Response(status_code=CLIENT_GONE)


class PendingStart:
    """A request's way to its first answer line, owned by exactly one consumer.

    If the result arrives and nobody claims it (the client left in the instant before its
    stream began), it is given back after a grace period, so no lease is ever left behind.
    """

    GRACE = 5.0

    def __init__(self, call: Call, coro: Any) -> None:
        self.chat = call
        self.claimed = False
        self.task: asyncio.Task[Replay] = asyncio.get_running_loop().create_task(coro)
        self.task.add_done_callback(self._arrived)

    def _arrived(self, task: asyncio.Task[Replay]) -> None:
        if not self.claimed and not task.cancelled() and task.exception() is None:
            asyncio.get_running_loop().call_later(self.GRACE, self._orphaned)

    def _orphaned(self) -> None:
        if not self.claimed:
            self.claimed = True
            self.chat.abandon(self.task.result())

    def claim_now(self) -> Replay:
        self.claimed = True
        return self.task.result()

    async def claim(self) -> Replay:
        replay = await self.task
        self.claimed = True
        return replay

    async def cancel(self) -> None:
        """Stop it; if it already got its first line, give everything back."""
        if self.claimed and self.task.done():
            return
        was_claimed, self.claimed = self.claimed, True
        if self.task.done():
            if not was_claimed and not self.task.cancelled() and self.task.exception() is None:
                self.chat.abandon(self.task.result())
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
