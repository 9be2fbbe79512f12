"""Request models of the OpenAI surface (pydantic), and their reduction to the site's turns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openai_front.errors import InvalidRequest
from sites.lmarena import ChatTurn


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = None
    temperature: float | None = None


class PrefillRequest(BaseModel):
    models: str | list[str] | None = None  # groups (text, search, image, video, all) and/or names
    per_model: int | None = Field(default=None, ge=1, le=64)
    message: str | None = Field(default=None, min_length=1)


class RetireRequest(BaseModel):
    model: str = Field(min_length=1)


def to_turns(messages: list[ChatMessage]) -> list[ChatTurn]:
    """OpenAI messages → the site's turns: `developer` becomes `system`, tool results become user
    text, text parts join with blank lines, `image_url` parts become attachments."""
    turns: list[ChatTurn] = []
    for index, msg in enumerate(messages):
        role = {"developer": "system", "tool": "user"}.get(msg.role, msg.role)
        attachments: list[dict[str, str]] = []
        if msg.content is None:
            text = ""
        elif isinstance(msg.content, str):
            text = msg.content
        else:
            texts = []
            for part_index, part in enumerate(msg.content):
                kind = part.get("type")
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    if not isinstance(url, str) or not url:
                        raise InvalidRequest(
                            "image_url part without a url", param=f"messages[{index}].content[{part_index}]"
                        )
                    attachments.append(_attachment(url, len(attachments)))
                else:
                    raise InvalidRequest(
                        f"content part type {kind!r} is not supported",
                        param=f"messages[{index}].content[{part_index}].type",
                    )
            text = "\n\n".join(texts)
        if role == "user" and not text.strip() and not attachments:
            text = " "
        turns.append(ChatTurn(role=role, content=text, attachments=attachments))
    return turns


def _attachment(url: str, index: int) -> dict[str, str]:
    content_type = "image/png"
    if url.startswith("data:"):
        content_type = url[5:].split(";", 1)[0].split(",", 1)[0] or content_type
    ext = content_type.rsplit("/", 1)[-1]
    return {"name": f"image_{index}.{ext}", "contentType": content_type, "url": url}
