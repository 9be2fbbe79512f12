"""What a failed job means: whether another conversation is worth trying, and what the client is told."""

from __future__ import annotations

from relay.errors import (
    ContentFiltered,
    OutputInvalid,
    PromptRefused,
    RateLimited,
    RelayError,
    ToolBroke,
    Unavailable,
    UpstreamFailed,
    UpstreamTimedOut,
)
from relay.jobs import JobFailed, ToolFailure
from relay.pages import advice
from sites import lmarena as site

Kind = site.FailureKind
# Failures before the first token after which another conversation of the same model is tried.
# Not: content_filter and prompt_refused (the request itself), challenge (the page), rate_limited (the model),
# spoofed_id (the clock).
FAILOVER_KINDS = frozenset(
    {Kind.FOREIGN_SESSION, Kind.HAS_FEEDBACK, Kind.NOT_FOUND, Kind.UPSTREAM_ERROR, Kind.TRUNCATED, Kind.EMPTY,
     Kind.STREAM_ERROR, Kind.ABORTED, Kind.BATTLE_TURN, Kind.MOVED, Kind.LOGIN_GATE, ToolFailure.PAGE_ERROR,
     ToolFailure.TIMEOUT, ToolFailure.PAGE_GONE}
)
WHO = {"upstream": "LMArena", "page": "the browser page", "proxy": "the proxy", "tool": "the tool"}


def failure_error(item: JobFailed) -> RelayError:
    """What a failed job tells the client (and who failed: the job's source)."""
    error = _error_of(item)
    error.source = item.source
    return error


def _error_of(item: JobFailed) -> RelayError:
    message = f"{WHO.get(item.source, item.source)}: {item.message}"
    if item.kind == Kind.RATE_LIMITED:
        return RateLimited(message, retry_after=item.retry_after or 60)
    if item.kind == Kind.CONTENT_FILTER:
        return ContentFiltered(message)
    if item.kind == Kind.PROMPT_REFUSED:
        return PromptRefused(f"{message}: the site refuses this prompt; sending it again will not help")
    if item.kind == Kind.RECAPTCHA:
        return Unavailable(f"{message} (twice, with fresh tokens). {advice('needs_human_check')}", retry_after=60)
    if item.kind == Kind.LOGIN_GATE:
        return Unavailable(f"{message}. {advice('needs_account')}", retry_after=60, code="login_required")
    if item.kind == Kind.MOVED:
        return Unavailable(f"{message}. {advice('moved')}", retry_after=30, code="site_moved")
    if item.kind == Kind.SPOOFED_ID:
        return UpstreamFailed(f"{message}: the site checks the time inside the ids the page sends, and this "
                              "machine's clock is more than an hour off: set it right (e.g. turn on NTP)",
                              code="clock_off")
    if item.kind in (Kind.CHALLENGE, ToolFailure.PAGE_GONE):
        return Unavailable(message, retry_after=item.retry_after or 30)
    if item.kind == ToolFailure.OUTPUT_INVALID:
        return OutputInvalid(message)
    if item.kind == ToolFailure.TOOL_ERROR:
        return ToolBroke(message)
    if item.kind == ToolFailure.TIMEOUT:
        return UpstreamTimedOut(message)
    return UpstreamFailed(message)
