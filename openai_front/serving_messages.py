"""The Anthropic Messages API (`POST /v1/messages`) over the same engine as chat completions.

An answer's parts (relay/reading.py) become content blocks: reasoning a `thinking` block, text (and images,
as Markdown) a `text` block, each tool call a `tool_use` block. Streamed, they are Anthropic's events:
`message_start`, then per block `content_block_start`, its deltas and `content_block_stop`, then
`message_delta` (the stop reason and the output tokens) and `message_stop`; a failure after the start is an
`error` event.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, AsyncIterator, Coroutine

from openai_front.anthropic_protocol import MessagesRequest, error_body, messages_spec, messages_turns
from openai_front.errors import APIError, InvalidRequest, ModelNotFound, answer_failed, from_core
from openai_front.protocol import MAX_INLINE_BYTES, MAX_UPLOAD_BYTES
from openai_front.serving_chat import ChatService
from relay.engine import Replay, image_markdown
from relay.errors import RelayError
from relay.jobs import JobFailed
from relay.output import ToolCall, estimate_tokens, with_instructions
from relay.reading import AnswerReader, Part
from relay.requestlog import RequestRecord
from relay.shaping import shape

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
BLOCKS = {"reasoning": "thinking", "text": "text", "image": "text", "call": "tool_use"}


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\r\ndata: ".encode() + json.dumps(data, ensure_ascii=False).encode() + b"\r\n\r\n"


def tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


class MessagesCall:
    """One Messages API request, served (streaming or not) by openai_front.streaming.answer."""

    def __init__(self, chat: ChatService, body: MessagesRequest) -> None:
        self.chat, self.body = chat, body
        self.stream, self.model = body.stream, body.model

    def start(self, record: RequestRecord) -> Coroutine[Any, Any, Replay]:
        return self._start(record)

    async def _start(self, record: RequestRecord) -> Replay:
        services = self.chat.services
        settings = services.settings
        model = services.models.resolve(self.body.model)
        if model is None:
            raise ModelNotFound(f"The model {self.body.model!r} does not exist", param="model")
        spec = messages_spec(self.body)
        if spec.calls_tools and model.modality == "image":
            raise InvalidRequest(f"The image model {model.name!r} takes no tools", param="model")
        turns = messages_turns(self.body.system, self.body.messages,
                               MAX_UPLOAD_BYTES if settings.upload_files else MAX_INLINE_BYTES)
        if any(t.attachments for t in turns) and not model.capabilities["image_input"]:
            raise InvalidRequest(f"The model {model.name!r} does not accept images or files", param="messages")
        turns = with_instructions(shape(turns, model.modality, settings.tavern_mode, settings.bypass_mode), spec)
        model, background = self.chat.route_side_call(model, turns, record)
        try:
            replay = await self.chat.engine.start(model, turns, record, background=background)
        except RelayError as e:
            raise from_core(e) from None
        replay.turns, replay.spec = turns, spec
        return replay

    def abandon(self, replay: Replay) -> None:
        self.chat.abandon(replay)

    def _reader(self, replay: Replay) -> AnswerReader:
        assert replay.spec is not None
        return AnswerReader(self.chat.engine, replay, replay.spec)

    async def complete(self, replay: Replay) -> dict[str, Any]:
        record, reader = replay.record, self._reader(replay)
        blocks: list[dict[str, Any]] = []
        async for part in reader.parts():
            if isinstance(part, JobFailed):
                raise answer_failed(record, part)
            if record.first_token_at is None:
                record.first_token_at = time.time()
            kind = BLOCKS[part.kind]
            if kind == "tool_use" and part.call is not None:
                blocks.append({"type": "tool_use", "id": tool_use_id(part.call), "name": part.call.name,
                               "input": part.call.arguments})
            elif blocks and blocks[-1]["type"] == kind:
                blocks[-1][kind] += _text(part)
            else:
                blocks.append({"type": kind, kind: _text(part), **({"signature": ""} if kind == "thinking" else {})})
        record.close(200)
        return {"id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant",
                "model": replay.model.name, "content": blocks, **self._stop(reader), "usage": _usage(replay, reader)}

    async def events(self, replay: Replay) -> AsyncIterator[bytes]:
        record, reader = replay.record, self._reader(replay)
        yield event("message_start", {"type": "message_start", "message": {
            "id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant", "model": replay.model.name,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": replay.prompt_tokens, "output_tokens": 0}}})
        index, open_kind = -1, None
        async for part in reader.parts():
            if isinstance(part, JobFailed):
                failed = answer_failed(record, part)
                yield event("error", error_body(failed))
                return
            if record.first_token_at is None:
                record.first_token_at = time.time()
            kind = BLOCKS[part.kind]
            if kind != open_kind or kind == "tool_use":
                if open_kind is not None:
                    yield event("content_block_stop", {"type": "content_block_stop", "index": index})
                index, open_kind = index + 1, kind
                yield event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": _block_start(part)})
            yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": _delta(part)})
        if open_kind is not None:
            yield event("content_block_stop", {"type": "content_block_stop", "index": index})
        record.close(200)
        yield event("message_delta", {"type": "message_delta", "delta": self._stop(reader),
                                      "usage": {"output_tokens": _usage(replay, reader)["output_tokens"]}})
        yield event("message_stop", {"type": "message_stop"})

    def failed(self, error: APIError) -> bytes:
        return event("error", error_body(error))

    def _stop(self, reader: AnswerReader) -> dict[str, Any]:
        finish = reader.finish_reason()
        matched = reader.filter.stopped_by
        if finish == "stop" and matched is not None:
            return {"stop_reason": "stop_sequence", "stop_sequence": matched}
        return {"stop_reason": STOP_REASONS.get(finish, "end_turn"), "stop_sequence": None}


def _text(part: Part) -> str:
    return image_markdown(part.text) if part.kind == "image" else part.text


def _block_start(part: Part) -> dict[str, Any]:
    if part.kind == "call" and part.call is not None:
        return {"type": "tool_use", "id": tool_use_id(part.call), "name": part.call.name, "input": {}}
    if part.kind == "reasoning":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "text", "text": ""}


def _delta(part: Part) -> dict[str, Any]:
    if part.kind == "call" and part.call is not None:
        return {"type": "input_json_delta", "partial_json": part.call.arguments_json()}
    if part.kind == "reasoning":
        return {"type": "thinking_delta", "thinking": part.text}
    return {"type": "text_delta", "text": _text(part)}


def _usage(replay: Replay, reader: AnswerReader) -> dict[str, int]:
    if reader.usage is not None:
        return {"input_tokens": reader.usage["prompt_tokens"], "output_tokens": reader.usage["completion_tokens"]}
    shown = reader.text + "".join(c.arguments_json() for c in reader.calls)
    return {"input_tokens": replay.prompt_tokens, "output_tokens": estimate_tokens(shown)}
