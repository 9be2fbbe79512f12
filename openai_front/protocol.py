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

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openai_front.errors import InvalidRequest, TooLarge
from relay.output import OutputSpec, ToolSpec, call_text, result_text
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

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool turn: the call it answers


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(CleanModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


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


class ModelBody(BaseModel):
    """A body that names one model."""

    model: str = Field(min_length=1)


# The site takes files inline as data: URLs up to about this size (larger ones are refused with 413).
MAX_INLINE_BYTES = 5 * 1024 * 1024
# Through the site's upload flow (arena_upload_files) the tool lets files up to this size through.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_STOP = 4  # OpenAI's own limit


def output_spec(request: ChatCompletionRequest) -> OutputSpec:
    """What the client asks of the answer beyond its text (relay/output.py), checked."""
    tools = [_tool(i, t) for i, t in enumerate(request.tools or [])]
    names = {t.name for t in tools}
    choice = request.tool_choice if request.tool_choice is not None else "auto"
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if choice.get("type") != "function" or not isinstance(named, str):
            raise InvalidRequest("tool_choice must be none, auto, required, or {type: function, function: {name}}",
                                 param="tool_choice")
        choice = named
    if choice not in ("none", "auto", "required") and choice not in names:
        raise InvalidRequest(f"tool_choice names {choice!r}, which is not among the tools", param="tool_choice")
    if choice == "required" and not tools:
        raise InvalidRequest("tool_choice is required but no tools were given", param="tool_choice")
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stop) > MAX_STOP or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest(f"stop takes a string or a list of up to {MAX_STOP} strings", param="stop")
    spec = OutputSpec(tools=tools, tool_choice=str(choice), parallel=request.parallel_tool_calls is not False,
                      max_tokens=request.max_completion_tokens or request.max_tokens, stop=[s for s in stop if s])
    _response_format(request.response_format, spec)
    return spec


def _tool(index: int, tool: dict[str, Any]) -> ToolSpec:
    where = f"tools[{index}]"
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise InvalidRequest("only tools of type function are supported", param=f"{where}.type")
    name = function.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidRequest("a function's name must be 1-64 letters, digits, _ or -", param=f"{where}.function.name")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise InvalidRequest("a function's parameters must be a JSON Schema object",
                             param=f"{where}.function.parameters")
    return ToolSpec(name, str(function.get("description") or ""), parameters)


def _response_format(value: dict[str, Any] | None, spec: OutputSpec) -> None:
    kind = (value or {}).get("type", "text")
    if kind == "json_object":
        spec.json = "object"
    elif kind == "json_schema":
        schema = ((value or {}).get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format json_schema needs json_schema.schema, an object",
                                 param="response_format")
        spec.json, spec.schema = "schema", schema
    elif kind != "text":
        raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format")


def to_turns(messages: list[ChatMessage], max_bytes: int = MAX_INLINE_BYTES) -> list[ChatTurn]:
    """OpenAI messages → the site's turns: `developer` becomes `system`, text parts join with blank lines,
    `image_url` and `file` parts become attachments; an assistant's tool calls are written as it wrote them
    and a tool's result as a labelled user message (relay/output.py)."""
    turns: list[ChatTurn] = []
    calls: dict[str, str] = {}  # call id -> tool name, from the assistant turns before
    for index, msg in enumerate(messages):
        role = {"developer": "system", "tool": "user", "function": "user"}.get(msg.role, msg.role)
        text, attachments = _content(msg, index, max_bytes)
        if msg.role == "assistant" and msg.tool_calls:
            text = "\n".join([text, *_calls_text(msg.tool_calls, index, calls)]).strip()
        elif msg.role in ("tool", "function"):
            call_id = msg.tool_call_id
            text = result_text(calls.get(call_id or "") or msg.name, call_id, text)
        if role == "user" and not text.strip() and not attachments:
            text = " "
        turns.append(ChatTurn(role=role, content=text, attachments=attachments))
    return turns


def _calls_text(tool_calls: list[dict[str, Any]], index: int, calls: dict[str, str]) -> list[str]:
    out = []
    for call_index, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest("a tool call needs function.name", param=f"messages[{index}].tool_calls[{call_index}]")
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            arguments = raw  # written back as the client has it
        if isinstance(call.get("id"), str):
            calls[call["id"]] = function["name"]
        out.append(call_text(function["name"], arguments))
    return out


def _content(msg: ChatMessage, index: int, max_bytes: int) -> tuple[str, list[dict[str, str]]]:
    """A message's text (its text parts joined with blank lines) and attachments."""
    if msg.content is None:
        return "", []
    if isinstance(msg.content, str):
        return msg.content, []
    texts: list[str] = []
    attachments: list[dict[str, str]] = []
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
            attachments.append(attachment(url, None, len(attachments), where, max_bytes))
        elif kind == "file":
            raw_file = part.get("file")
            file: dict[str, Any] = raw_file if isinstance(raw_file, dict) else {}
            data = file.get("file_data")
            if not isinstance(data, str) or not data.startswith("data:"):
                raise InvalidRequest(
                    "file parts need file.file_data as a data: URL (file ids are not supported)", param=where
                )
            attachments.append(attachment(data, file.get("filename"), len(attachments), where, max_bytes))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported", param=f"{where}.type")
    return "\n\n".join(texts), attachments


def attachment(url: str, filename: str | None, index: int, where: str, max_bytes: int) -> dict[str, str]:
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
