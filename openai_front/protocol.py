"""Request models of the OpenAI surface (pydantic), and their reduction to the site's turns.

What the API does with odd input (tests/openai_front/test_hygiene.py holds it to this):
- a lone UTF-16 surrogate (`"\ud800"`: valid JSON, which clients produce when they cut a string inside an
  emoji) is replaced by U+FFFD, anywhere in a body: it could never be sent to the site as UTF-8;
- NUL characters and any other text pass as they are (JSON-escaped on the way to the site);
- a body that is not UTF-8, not JSON, or nested too deeply is a 400; one over `arena_max_request_mb` a 413;
- a field of the wrong type is a 400 naming it; unknown fields are accepted and ignored;
- `content` may be a string, a list of parts (`text` with a string `text`, `image_url`, `file`), or null
  (an assistant turn that only called tools).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openai_front.errors import InvalidRequest, TooLarge
from sites.lmarena import ChatTurn

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """A string with each lone surrogate replaced by U+FFFD (json.loads has already joined the pairs)."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text


def clean_json(value: Any) -> Any:
    """Every string in a parsed JSON value cleaned, in place where it can be (iterative: no recursion limit)."""
    if isinstance(value, str):
        return clean_text(value)
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in list(items):
            if isinstance(item, str):
                node[key] = clean_text(item)
            elif isinstance(item, (dict, list)):
                stack.append(item)
        if isinstance(node, dict):
            for key in [k for k in node if isinstance(k, str) and _LONE_SURROGATE.search(k)]:
                node[clean_text(key)] = node.pop(key)
    return value


class CleanModel(BaseModel):
    """A request body whose strings are cleaned before anything reads them."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        return clean_json(data)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(CleanModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = None
    temperature: float | None = None


class ImageRequest(CleanModel):
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
                    text_part = part.get("text", "")
                    if not isinstance(text_part, str):
                        raise InvalidRequest("a text part's text must be a string", param=f"{where}.text")
                    texts.append(text_part)
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
