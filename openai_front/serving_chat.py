"""Chat completions in OpenAI's shape: validate the request, have the engine replay it, and turn the
site's answer lines into chunks (streaming) or one message.

Errors before the first token are raised (a real HTTP status); after it they are sent in-band.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from openai_front.errors import InvalidRequest, ModelNotFound, answer_failed, from_core
from openai_front.protocol import MAX_INLINE_BYTES, MAX_UPLOAD_BYTES, ChatCompletionRequest, output_spec, to_turns
from relay.engine import Replay, ReplayEngine, image_markdown
from relay.errors import RelayError
from relay.jobs import JobFailed
from relay.models import ModelInfo
from relay.output import OutputSpec, ToolCall, estimate_tokens, with_instructions
from relay.reading import AnswerReader, Part
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.settings import Settings, Strategy
from relay.shaping import shape
from relay.sidecalls import side_call
from sites import lmarena as site


class ChatService:
    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine

    def validate(self, request: ChatCompletionRequest) -> tuple[ModelInfo, list[site.ChatTurn], OutputSpec]:
        """The model, the turns the site is sent (with the instructions tools and JSON need), and what the
        client asks of the answer."""
        settings = self.services.settings
        model = self.services.models.resolve(request.model)
        if model is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        if request.n != 1:
            raise InvalidRequest("n > 1 is not supported for chat completions; send n requests", param="n")
        if request.stream_options is not None and not request.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        spec = output_spec(request)
        if (spec.calls_tools or spec.json) and model.modality == "image":
            raise InvalidRequest(f"The image model {model.name!r} takes no tools and makes no JSON", param="model")
        turns = to_turns(request.messages, MAX_UPLOAD_BYTES if settings.upload_files else MAX_INLINE_BYTES)
        if any(t.attachments for t in turns) and not model.capabilities["image_input"]:
            raise InvalidRequest(f"The model {model.name!r} does not accept images or files", param="messages")
        return model, with_instructions(shape(turns, model.modality, settings.tavern_mode, settings.bypass_mode),
                                        spec), spec

    async def start(
        self, request: ChatCompletionRequest, record: RequestRecord, strategy: Strategy | None = None
    ) -> Replay:
        """Everything up to the first answer line. Errors raised here are real HTTP statuses."""
        model, turns, spec = self.validate(request)
        model, background = self.route_side_call(model, turns, record)
        try:
            replay = await self.engine.start(model, turns, record, strategy, background=background)
        except RelayError as e:
            raise from_core(e) from None
        replay.turns, replay.spec = turns, spec
        return replay

    def route_side_call(self, model: ModelInfo, turns: list[site.ChatTurn],
                        record: RequestRecord) -> tuple[ModelInfo, bool]:
        """A client's side call (a title, tags...) as arena_side_calls says: deferred behind the person's
        requests, sent to another model, refused, or (same) like any request. Returns the model and whether
        it waits behind the others."""
        kind = side_call(turns)
        route = self.services.settings.side_calls
        if kind is None or route == "same":
            return model, False
        record.side_call = kind
        if route == "refuse":
            raise InvalidRequest(f"This looks like a client's side call ({kind}); this tool is set to refuse those "
                                 "(arena_side_calls=refuse)", code="side_call_refused")
        if route != "defer":
            other = self.services.models.resolve(route)
            if other is None:
                raise ModelNotFound(f"arena_side_calls names the model {route!r}, which does not exist", param="model")
            record.model = other.name
            return other, True
        return model, True

    def abandon(self, replay: Replay) -> None:
        self.engine.abandon(replay)

    def _answer(self, replay: Replay) -> Answer:
        return Answer(self.services.settings, AnswerReader(self.engine, replay, replay.spec or OutputSpec()))

    async def stream(self, replay: Replay, include_usage: bool) -> AsyncIterator[bytes]:
        """OpenAI chunks (each as its JSON text), then an in-band error if the answer broke mid-way."""
        record = replay.record
        chunks = ChunkJSON({"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": replay.model.name})
        yield chunks.delta({"role": "assistant", "content": ""})
        answer = self._answer(replay)
        async for delta in answer.deltas():
            if isinstance(delta, JobFailed):
                failed = answer_failed(record, delta)
                yield to_json(failed.body())
                return
            if record.first_token_at is None:
                record.first_token_at = time.time()
            yield chunks.delta(delta)
        last = chunks.chunk({}, answer.finish_reason())
        if answer.sources:
            last["citations"] = answer.sources
        yield to_json(last)
        record.close(200)
        if include_usage:
            yield to_json({**chunks.base, "choices": [], "usage": _usage(replay, answer)})

    async def complete(self, replay: Replay) -> dict[str, Any]:
        record = replay.record
        answer = self._answer(replay)
        async for delta in answer.deltas():
            if isinstance(delta, JobFailed):
                raise answer_failed(record, delta)
            if record.first_token_at is None:
                record.first_token_at = time.time()
        message: dict[str, Any] = {"role": "assistant", "content": answer.content() or (None if answer.calls
                                                                                         else "")}
        if answer.calls:
            message["tool_calls"] = [_call(call) for call in answer.calls]
        if answer.reasoning():
            message["reasoning_content"] = answer.reasoning()
        if answer.images:
            message["images"] = list(answer.images)
        record.close(200)
        result: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": replay.model.name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason()}],
            "usage": _usage(replay, answer),
        }
        if answer.sources:
            result["citations"] = answer.sources
        return result


def _call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments_json()}}
    return out if index is None else {"index": index, **out}


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class ChunkJSON:
    """The JSON text of one stream's chunks. The fields every chunk shares are encoded once, so a chunk
    costs the encoding of its delta only (most of a stream's CPU was the same dict encoded again)."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        shared = json.dumps(base, ensure_ascii=False)[:-1]  # without its closing brace
        self._head = (shared + ', "choices": [{"index": 0, "delta": ').encode("utf-8")

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """`to_json(self.chunk(delta, finish))`, made faster."""
        return b"".join((self._head, to_json(delta), b', "logprobs": null, "finish_reason": ',
                         to_json(finish), b"}]}"))


def _usage(replay: Replay, answer: Answer) -> dict[str, int]:
    """The site's own token counts when its finish line has them; estimates otherwise."""
    prompt, completion = replay.prompt_tokens, estimate_tokens(answer.text())
    if answer.reader.usage is not None:
        prompt, completion = answer.reader.usage["prompt_tokens"], answer.reader.usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Answer:
    """An answer's parts (relay/reading.py) → OpenAI deltas, shaped by the settings.

    Reasoning goes to `reasoning_content` (or inline as <think>...</think>), images become Markdown
    images as soon as their line arrives, tool calls become `tool_calls` deltas, a search answer's sources
    are collected and, when enabled, appended as a Markdown list at the end.
    """

    def __init__(self, settings: Settings, reader: AnswerReader) -> None:
        self.settings = settings
        self.reader = reader
        self.shown: list[dict[str, Any]] = []
        self.images: list[str] = []
        self._thinking = False

    @property
    def calls(self) -> list[ToolCall]:
        return self.reader.calls

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.reader.sources

    def finish_reason(self) -> str:
        return self.reader.finish_reason()

    async def deltas(self) -> AsyncIterator[dict[str, Any] | JobFailed]:
        async for part in self.reader.parts():
            if isinstance(part, JobFailed):
                yield part
                return
            for delta in self._delta(part):
                self.shown.append(delta)
                yield delta
        for delta in self._close():
            self.shown.append(delta)
            yield delta

    def _delta(self, part: Part) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if part.kind == "reasoning":
            if not self.settings.reasoning_as_think:
                return [{"reasoning_content": part.text}]
            if not self._thinking:
                self._thinking = True
                return [{"content": "<think>" + part.text}]
            return [{"content": part.text}]
        if self._thinking:
            self._thinking = False
            out.append({"content": "</think>\n\n"})
        if part.kind == "image":
            self.images.append(part.text)
            out.append({"content": image_markdown(part.text)})
        elif part.kind == "call" and part.call is not None:
            out.append({"tool_calls": [_call(part.call, self.calls.index(part.call))]})
        else:
            out.append({"content": part.text})
        return out

    def _close(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._thinking:
            self._thinking = False
            out.append({"content": "</think>\n\n"})
        if self.sources and self.settings.citations:
            lines = "\n".join(f"{i}. [{s['title']}]({s['url']})" for i, s in enumerate(self.sources, 1))
            out.append({"content": f"\n\nSources:\n{lines}"})
        return out

    def content(self) -> str:
        return "".join(d.get("content", "") for d in self.shown)

    def reasoning(self) -> str:
        return "".join(d.get("reasoning_content", "") for d in self.shown)

    def text(self) -> str:
        return self.content() + self.reasoning() + "".join(c.arguments_json() for c in self.calls)
