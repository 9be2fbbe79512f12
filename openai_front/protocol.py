"""Request models of the OpenAI surface (pydantic), and their reduction to the site's turns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openai_front.errors import InvalidRequest, TooLarge
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


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=10)
    response_format: Literal["url", "b64_json"] = "url"
    size: str | None = None


class PrefillRequest(BaseModel):
    models: str | list[str] | None = None  # groups (text, search, image, video, all) and/or names
    per_model: int | None = Field(default=None, ge=1, le=64)
    message: str | None = Field(default=None, min_length=1)


class RetireRequest(BaseModel):
    model: str = Field(min_length=1)


# The site takes files inline as data: URLs up to about this size (larger ones are refused with 413).
MAX_INLINE_BYTES = 5 * 1024 * 1024
# Through the site's upload flow (arena_upload_files) the tool lets files up to this size through.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def to_turns(messages: list[ChatMessage], max_bytes: int = MAX_INLINE_BYTES) -> list[ChatTurn]:
    """OpenAI messages → the site's turns: `developer` becomes `system`, tool results become user
    text, text parts join with blank lines, `image_url` and `file` parts become attachments."""
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
                where = f"messages[{index}].content[{part_index}]"
                kind = part.get("type")
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    if not isinstance(url, str) or not url:
                        raise InvalidRequest("image_url part without a url", param=where)
                    attachments.append(_attachment(url, None, len(attachments), where, max_bytes))
                elif kind == "file":
                    raw_file = part.get("file")
                    file: dict[str, Any] = raw_file if isinstance(raw_file, dict) else {}
                    data = file.get("file_data")
                    if not isinstance(data, str) or not data.startswith("data:"):
                        raise InvalidRequest(
                            "file parts need file.file_data as a data: URL (file ids are not supported)", param=where
                        )
                    attachments.append(_attachment(data, file.get("filename"), len(attachments), where, max_bytes))
                else:
                    raise InvalidRequest(f"content part type {kind!r} is not supported", param=f"{where}.type")
            text = "\n\n".join(texts)
        if role == "user" and not text.strip() and not attachments:
            text = " "
        turns.append(ChatTurn(role=role, content=text, attachments=attachments))
    return turns


def _attachment(url: str, filename: str | None, index: int, where: str, max_bytes: int) -> dict[str, str]:
    """The site's attachment shape: {name, contentType, url}; data: URLs are checked for size."""
    content_type = "image/png"
    if url.startswith("data:"):
        header, _, payload = url[5:].partition(",")
        content_type = header.split(";", 1)[0] or "application/octet-stream"
        size = len(payload) * 3 // 4 if ";base64" in header else len(payload)
        if size > max_bytes:
            how = "inline" if max_bytes == MAX_INLINE_BYTES else "through its upload flow here"
            raise TooLarge(
                f"{filename or 'an attachment'} is {size / 1048576:.1f} MB; the site takes at most "
                f"{max_bytes // 1048576} MB {how}",
                param=where,
            )
    elif not url.startswith(("http://", "https://")):
        raise InvalidRequest("attachments must be data: or http(s) URLs", param=where)
    ext = content_type.rsplit("/", 1)[-1].split("+", 1)[0]
    return {"name": filename or f"file_{index}.{ext}", "contentType": content_type, "url": url}
