"""The Anthropic Messages API's requests (what Claude Code and the Anthropic SDKs send), reduced to the site's
turns and an `OutputSpec`, and its error shape.

`system` becomes the leading system turn; text blocks join with blank lines; images (base64 or URL) and
PDF documents become attachments; an assistant's `tool_use` blocks are written back as it wrote them and a
`tool_result` as a labelled user message (relay/output.py); `thinking` blocks of earlier answers are left
out (the site does not take them back). Sampling fields (`temperature`, `top_p`, `top_k`, `metadata`,
`thinking`) are accepted and ignored: the site does not take them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openai_front.errors import APIError, InvalidRequest
from openai_front.protocol import MAX_INLINE_BYTES, CleanModel, attachment
from relay.output import OutputSpec, ToolSpec, call_text, result_text
from sites.lmarena import ChatTurn

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


def error_body(error: APIError) -> dict[str, Any]:
    """An error in Anthropic's shape."""
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(CleanModel):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


class CountTokensRequest(CleanModel):
    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


def messages_spec(request: MessagesRequest) -> OutputSpec:
    tools = [_tool(i, t) for i, t in enumerate(request.tools or [])]
    choice = request.tool_choice or {"type": "auto"}
    kind = choice.get("type")
    if kind == "tool":
        name = choice.get("name")
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
        how = str(name)
    elif kind in ("auto", "any", "none"):
        how = {"auto": "auto", "any": "required", "none": "none"}[str(kind)]
        if how == "required" and not tools:
            raise InvalidRequest("tool_choice is any but no tools were given", param="tool_choice")
    else:
        raise InvalidRequest("tool_choice type must be auto, any, tool or none", param="tool_choice")
    return OutputSpec(tools=tools, tool_choice=how, parallel=not choice.get("disable_parallel_tool_use", False),
                      max_tokens=request.max_tokens, stop=[s for s in request.stop_sequences or [] if s])


def _tool(index: int, tool: dict[str, Any]) -> ToolSpec:
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequest(f"the server tool {tool.get('type')!r} is not supported here: only your own tools",
                             param=f"tools.{index}.type")
    name, schema = tool.get("name"), tool.get("input_schema") or {"type": "object", "properties": {}}
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise InvalidRequest("a tool needs a name and an input_schema object", param=f"tools.{index}")
    return ToolSpec(name, str(tool.get("description") or ""), schema)


def messages_turns(system: str | list[dict[str, Any]] | None, messages: list[AnthropicMessage],
                   max_bytes: int = MAX_INLINE_BYTES) -> list[ChatTurn]:
    turns: list[ChatTurn] = []
    system_text = system if isinstance(system, str) else "\n\n".join(
        str(b.get("text", "")) for b in system or [] if b.get("type") == "text")
    if system_text.strip():
        turns.append(ChatTurn("system", system_text))
    calls: dict[str, str] = {}  # tool_use id -> tool name
    for index, message in enumerate(messages):
        blocks = [{"type": "text", "text": message.content}] if isinstance(message.content, str) else message.content
        texts: list[str] = []
        attachments: list[dict[str, str]] = []
        for block_index, block in enumerate(blocks):
            texts.extend(_block(block, f"messages.{index}.content.{block_index}", calls, attachments, max_bytes))
        text = "\n\n".join(t for t in texts if t)
        if message.role == "user" and not text.strip() and not attachments:
            text = " "
        turns.append(ChatTurn(message.role, text, attachments))
    return turns


def _block(block: dict[str, Any], where: str, calls: dict[str, str], attachments: list[dict[str, str]],
           max_bytes: int) -> list[str]:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text", "")
        if not isinstance(text, str):
            raise InvalidRequest("a text block's text must be a string", param=f"{where}.text")
        return [text]
    if kind in ("image", "document"):
        attachments.append(_source(block, where, len(attachments), max_bytes))
        return []
    if kind == "tool_use":
        name = str(block.get("name", ""))
        calls[str(block.get("id", ""))] = name
        return [call_text(name, block.get("input", {}))]
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            parts = []
            for inner in content:
                if inner.get("type") == "text":
                    parts.append(str(inner.get("text", "")))
                elif inner.get("type") == "image":
                    attachments.append(_source(inner, where, len(attachments), max_bytes))
            content = "\n\n".join(parts)
        call_id = str(block.get("tool_use_id", ""))
        text = ("(the tool failed) " if block.get("is_error") else "") + str(content)
        return [result_text(calls.get(call_id), call_id or None, text)]
    if kind in ("thinking", "redacted_thinking"):
        return []
    raise InvalidRequest(f"content block type {kind!r} is not supported", param=f"{where}.type")


def _source(block: dict[str, Any], where: str, index: int, max_bytes: int) -> dict[str, str]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    assert isinstance(source, dict)
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest("an image or document needs a base64 or url source", param=f"{where}.source")
    return attachment(url, block.get("title") if isinstance(block.get("title"), str) else None, index, where, max_bytes)
