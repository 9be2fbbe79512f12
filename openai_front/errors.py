"""Errors in OpenAI's shape, and the one place that maps them to HTTP statuses."""

from __future__ import annotations

from typing import Any

from relay import errors as core
from relay.failures import failure_error
from relay.jobs import JobFailed
from relay.requestlog import RequestRecord


class APIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    source = "tool"  # who said no (relay/errors.py SOURCES): the request log's error_source

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(round(self.retry_after))))}


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    source = "client"


class TooLarge(InvalidRequest):
    status = 413
    code = "file_too_large"


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    source = "client"


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    source = "client"


class RateLimited(APIError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Unavailable(APIError):
    """No page connected, a human check pending, or no usable conversation: try again later."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamError(APIError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class InternalError(APIError):
    """A bug of the tool's own; the message names it."""

    status = 500
    type = "server_error"
    code = "tool_error"


class UpstreamTimeout(APIError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


def error_body(message: str, type_: str = "server_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# The core's errors, as the client sees them.
_FROM_CORE: list[tuple[type[core.RelayError], type[APIError]]] = [
    (core.ContentFiltered, InvalidRequest),
    (core.PromptRefused, InvalidRequest),
    (core.RateLimited, RateLimited),
    (core.Unavailable, Unavailable),
    (core.UpstreamTimedOut, UpstreamTimeout),
    (core.UpstreamFailed, UpstreamError),
    (core.ToolBroke, InternalError),
    (core.OutputInvalid, UpstreamError),
]


def from_core(error: core.RelayError) -> APIError:
    for core_class, api_class in _FROM_CORE:
        if isinstance(error, core_class):
            out = api_class(error.message, param=error.param, code=error.code, retry_after=error.retry_after)
            break
    else:
        out = APIError(error.message, retry_after=error.retry_after)
    out.source = error.source
    return out


def answer_failed(record: RequestRecord, item: JobFailed) -> APIError:
    """What a job's failure gives the client, with the request closed on it (who failed included)."""
    failed = from_core(failure_error(item))
    record.close(failed.status, failed.message, failed.source)
    return failed
