"""A job's silence watch: one timer per job, counting from the last item, gone when the job ends."""

from __future__ import annotations

import asyncio

from relay.jobs import JobDone, JobFailed, JobTable, ToolFailure
from sites import lmarena as site


def new_job():
    return JobTable().new_create("gemini-2.5-pro", None, "chat", [], site.BodyFormat.USER_MESSAGE)


def line(text: str) -> site.StreamEvent:
    return site.StreamEvent("text", "a", text)


async def test_a_silent_job_fails_with_a_timeout():
    job = new_job()
    job.watch_silence(0.05)
    item = await asyncio.wait_for(job.queue.get(), 2)
    assert isinstance(item, JobFailed) and item.kind == ToolFailure.TIMEOUT and item.status == 504
    assert not job.ended, "the reader gave up; the answer itself has not ended (the engine stops it)"


async def test_lines_that_keep_coming_keep_the_job_alive_past_the_timeout():
    job = new_job()
    job.watch_silence(0.1)
    for index in range(6):  # 0.24 s in all, never 0.1 s quiet
        await asyncio.sleep(0.04)
        job.push(line(str(index)))
    job.push(JobDone())
    items = [job.queue.get_nowait() for _ in range(job.queue.qsize())]
    assert [i.text for i in items if isinstance(i, site.StreamEvent)] == [str(i) for i in range(6)]
    assert isinstance(items[-1], JobDone), "no timeout among them"


async def test_silence_after_some_lines_still_fails_and_an_ended_job_keeps_no_timer():
    job = new_job()
    job.watch_silence(0.05)
    job.push(line("first"))
    assert job.queue.get_nowait().text == "first"
    item = await asyncio.wait_for(job.queue.get(), 2)
    assert isinstance(item, JobFailed) and item.kind == ToolFailure.TIMEOUT
    done = new_job()
    done.watch_silence(30)
    done.push(JobDone())
    assert done._watch is None, "the timer is cancelled with the job's end"
