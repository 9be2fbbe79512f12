"""Chat completions in OpenAI's shape: validate the request, have the engine replay it, and turn the
site's answer lines into chunks (streaming) or one message.

Errors before the first token are raised (a real HTTP status); after it they are sent in-band.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from openai_front.errors import APIError, InvalidRequest, ModelNotFound, from_core
from openai_front.protocol import MAX_INLINE_BYTES, MAX_UPLOAD_BYTES, ChatCompletionRequest, to_turns
from relay.engine import Replay, ReplayEngine, estimate_tokens
from relay.errors import RelayError
from relay.failures import failure_error
from relay.jobs import JobFailed
from relay.models import ModelInfo
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.settings import Settings, Strategy
from relay.shaping import shape
from sites import lmarena as site


class ChatService:
    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine

    def validate(self, request: ChatCompletionRequest) -> tuple[ModelInfo, list[site.ChatTurn]]:
        settings = self.services.settings
        model = self.services.models.resolve(request.model)
        if model is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        if request.n != 1:
            raise InvalidRequest("n > 1 is not supported for chat completions; send n requests", param="n")
        if request.stream_options is not None and not request.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        turns = to_turns(request.messages, MAX_UPLOAD_BYTES if settings.upload_files else MAX_INLINE_BYTES)
        if any(t.attachments for t in turns) and not model.capabilities["image_input"]:
            raise InvalidRequest(f"The model {model.name!r} does not accept images or files", param="messages")
        return model, shape(turns, model.modality, settings.tavern_mode, settings.bypass_mode)

    async def start(
        self, request: ChatCompletionRequest, record: RequestRecord, strategy: Strategy | None = None
    ) -> Replay:
        """Everything up to the first answer line. Errors raised here are real HTTP statuses."""
        model, turns = self.validate(request)
        try:
            return await self.engine.start(model, turns, record, strategy)
        except RelayError as e:
            raise from_core(e) from None

    def abandon(self, replay: Replay) -> None:
        self.engine.abandon(replay)

    async def stream(self, replay: Replay, include_usage: bool) -> AsyncIterator[bytes]:
        """OpenAI chunks (each as its JSON text), then an in-band error if the answer broke mid-way."""
        record = replay.record
        chunks = ChunkJSON({"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": replay.model.name})
        yield chunks.delta({"role": "assistant", "content": ""})
        answer = Answer(self.services.settings, replay.side)
        async for item in self.engine.items(replay):
            if isinstance(item, site.StreamEvent):
                for delta in answer.feed(item):
                    if record.first_token_at is None:
                        record.first_token_at = time.time()
                    yield chunks.delta(delta)
            failed = _failure(item, answer)
            if failed is not None:
                record.close(failed.status, failed.message, _source(item))
                yield to_json(failed.body())
                return
        for delta in answer.close():
            yield chunks.delta(delta)
        last = chunks.chunk({}, answer.finish)
        if answer.sources:
            last["citations"] = answer.sources
        yield to_json(last)
        record.close(200)
        if include_usage:
            yield to_json({**chunks.base, "choices": [], "usage": _usage(replay, answer)})

    async def complete(self, replay: Replay) -> dict[str, Any]:
        record = replay.record
        answer = Answer(self.services.settings, replay.side)
        async for item in self.engine.items(replay):
            if isinstance(item, site.StreamEvent) and answer.feed(item) and record.first_token_at is None:
                record.first_token_at = time.time()
            failed = _failure(item, answer)
            if failed is not None:
                record.close(failed.status, failed.message, _source(item))
                raise failed
        answer.close()
        message: dict[str, Any] = {"role": "assistant", "content": answer.content()}
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
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}],
            "usage": _usage(replay, answer),
        }
        if answer.sources:
            result["citations"] = answer.sources
        return result


def _failure(item: Any, answer: Answer) -> APIError | None:
    """The client's error when the answer failed (a failed job, or an error line in the answer: the
    model's provider's or the site's own, moderation among them)."""
    if isinstance(item, JobFailed):
        return from_core(failure_error(item))
    if answer.error is not None:
        kind = site.stream_error_kind(answer.error)
        return from_core(failure_error(JobFailed(f"the answer failed: {answer.error}", 502, kind)))
    return None


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


def _source(item: Any) -> str:
    return item.source if isinstance(item, JobFailed) else "upstream"


def _usage(replay: Replay, answer: Answer) -> dict[str, int]:
    """The site's own token counts when its finish line has them; estimates otherwise."""
    prompt, completion = replay.prompt_tokens, estimate_tokens(answer.text())
    if answer.usage is not None:
        prompt, completion = answer.usage["prompt_tokens"], answer.usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Answer:
    """One participant's answer lines → OpenAI deltas, shaped by the settings.

    Reasoning goes to `reasoning_content` (or inline as <think>...</think>), images become Markdown
    images as soon as their line arrives, a search answer's sources are collected and, when enabled,
    appended as a Markdown list at the end.
    """

    def __init__(self, settings: Settings, side: str) -> None:
        self.settings = settings
        self.side = side
        self.deltas: list[dict[str, str]] = []
        self.images: list[str] = []
        self.sources: list[dict[str, Any]] = []
        self.finish = "stop"
        self.error: str | None = None
        self.usage: dict[str, int] | None = None  # the site's own counts, when its finish line has them
        self._thinking = False

    def feed(self, event: site.StreamEvent) -> list[dict[str, str]]:
        if event.side != self.side:
            return []
        out: list[dict[str, str]] = []
        if event.kind == "reasoning" and event.text:
            if not self.settings.reasoning_as_think:
                out.append({"reasoning_content": event.text})
            elif not self._thinking:
                self._thinking = True
                out.append({"content": "<think>" + event.text})
            else:
                out.append({"content": event.text})
        elif event.kind in ("text", "image") and event.text:
            if self._thinking:
                self._thinking = False
                out.append({"content": "</think>\n\n"})
            if event.kind == "image":
                self.images.append(event.text)
                out.append({"content": f"![image]({event.text})"})
            else:
                out.append({"content": event.text})
        elif event.kind == "citation":
            self._cite(event.data)
        elif event.kind == "finish":
            self.finish = site.openai_finish_reason(event.text)
            self.usage = site.usage_of(event)
        elif event.kind == "error":
            self.error = event.text
        self.deltas.extend(out)
        return out

    def _cite(self, data: Any) -> None:
        # the site sends each source as it is cited, and the whole list at the end
        for source in data if isinstance(data, list) else [data]:
            if not isinstance(source, dict) or not source.get("url"):
                continue
            entry = {"url": source["url"], "title": source.get("title") or source["url"]}
            for known in self.sources:
                if known["url"] == entry["url"]:
                    if source.get("title"):
                        known["title"] = source["title"]
                    break
            else:
                self.sources.append(entry)

    def close(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if self._thinking:
            self._thinking = False
            out.append({"content": "</think>\n\n"})
        if self.sources and self.settings.citations:
            lines = "\n".join(f"{i}. [{s['title']}]({s['url']})" for i, s in enumerate(self.sources, 1))
            out.append({"content": f"\n\nSources:\n{lines}"})
        self.deltas.extend(out)
        return out

    def content(self) -> str:
        return "".join(d.get("content", "") for d in self.deltas)

    def reasoning(self) -> str:
        return "".join(d.get("reasoning_content", "") for d in self.deltas)

    def text(self) -> str:
        return self.content() + self.reasoning()
