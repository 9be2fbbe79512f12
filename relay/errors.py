"""What the core tells a caller when it cannot serve a request. The HTTP front maps each class to a
status and OpenAI's error shape in one place (openai_front/errors.py)."""

from __future__ import annotations

# Who said no, in the request log, the journal and the dashboard: the client's request itself, the tool's
# own state or limits (a queue that stayed full, no usable conversation), the browser page, the proxy, or
# the site (LMArena, or the model's provider behind it).
SOURCES = ("client", "tool", "page", "proxy", "upstream")


class RelayError(Exception):
    code: str | None = None

    def __init__(
        self, message: str, *, retry_after: float | None = None, param: str | None = None, code: str | None = None,
        source: str = "tool",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.param = param
        self.source = source
        if code is not None:
            self.code = code


class ContentFiltered(RelayError):
    """The site's moderation refused the request."""

    code = "content_filter"


class PromptRefused(RelayError):
    """The site refused this prompt ("prompt failed"): asking again would only be refused again."""

    code = "prompt_refused"


class RateLimited(RelayError):
    """Every conversation stayed busy too long, or the site said to wait."""


class Unavailable(RelayError):
    """No page connected or ready, no usable conversation, a human check pending: try again later."""


class UpstreamFailed(RelayError):
    """The site, the page or the proxy failed the request."""


class OutputInvalid(RelayError):
    """The model's answer is not in the format the client asked for (JSON, a schema), also after one retry."""

    code = "invalid_output"


class ToolBroke(RelayError):
    """A bug of the tool's own stopped the request (before anything reached the site, if it was the proxy)."""

    code = "tool_error"


class UpstreamTimedOut(RelayError):
    pass
