"""The rule for what goes wrong inside the proxy's hooks.

- **The tool's own requests fail closed.** A request the page sends for a job (it carries the job's header,
  or the rewriter has claimed it) that a hook cannot handle never leaves: it is answered here, or stopped
  if it already left, and its job fails with the real cause. The site never receives a request the tool
  could not write (it would spend quota on, and change, a conversation with the wrong content).
- **The person's own traffic fails open.** If capturing or injecting breaks on one of their requests, the
  request and its response pass exactly as they were: the tool's trouble is never theirs.

mitmproxy itself logs an exception raised by a hook and carries on with the flow as it is; that is right
for the person's traffic and wrong for the tool's, hence `guarded`.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, TypeVar

from mitmproxy import http

from relay.jobs import Job, JobTable, ToolFailure

log = logging.getLogger(__name__)

JOB_HEADER = "x-bridge-job"  # the page's mark on a job's request, removed before it leaves
META_JOB = "arena.job"  # the job id, once the rewriter has claimed the flow

Hook = TypeVar("Hook", bound=Callable[..., Any])


def job_of(flow: http.HTTPFlow) -> str | None:
    """The job a flow belongs to, if it is one of the tool's own requests."""
    return flow.metadata.get(META_JOB) or flow.request.headers.get(JOB_HEADER)


def refuse(flow: http.HTTPFlow, job: Job | None, message: str, status: int = 502) -> None:
    """A job's request that must not leave: answered here, and the job told why."""
    flow.request.headers.pop(JOB_HEADER, None)
    if flow.response is None:
        flow.response = http.Response.make(status, json.dumps({"error": message}),
                                           {"content-type": "application/json"})
    if job is not None:
        job.fail(message, status, ToolFailure.TOOL_ERROR, "proxy")


def guarded(doing: str, jobs: Callable[[Any], JobTable | None], before_sending: bool = False
            ) -> Callable[[Hook], Hook]:
    """Wrap a hook: for a job's flow an exception fails it closed (`before_sending`: a request hook, so
    the request is answered here and never leaves; else it is stopped); for the person's, the flow passes."""

    def wrap(hook: Hook) -> Hook:
        @functools.wraps(hook)
        def run(self: Any, flow: http.HTTPFlow) -> Any:
            try:
                return hook(self, flow)
            except Exception as e:
                job_id = job_of(flow)
                if job_id is None:
                    log.exception("%s failed on the person's own request %s (it passes as it was)", doing,
                                  flow.request.pretty_url)
                    return None
                table = jobs(self)
                job = table.get(job_id) if table is not None else None
                message = f"could not {doing} the tool's request: {type(e).__name__}: {e}"
                log.exception("the proxy %s (job %s)", message, job_id[:8])
                if before_sending:
                    refuse(flow, job, message + " (nothing was sent to the site)", 500)
                else:  # it already left: stop it, and stop reading its answer
                    flow.kill()
                    if job is not None:
                        job.fail(message + " (the request was stopped)", 500, ToolFailure.TOOL_ERROR, "proxy")
                return None

        return run  # type: ignore[return-value]

    return wrap
