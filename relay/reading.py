"""One participant's answer read for a client, whatever API the client speaks.

The engine gives a replay's items; this turns them into `Part`s (text, reasoning, images, tool calls) through
the client's `OutputSpec` (relay/output.py): tool calls parsed out, stop strings and the token budget
enforced (then the site's generation is stopped), a JSON answer checked whole and, when it is not what was
asked for, asked for once more with the error before giving up. A failure (a failed job, an error line in the
answer, a JSON answer still wrong) ends the parts with a `JobFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Literal

from relay.errors import RelayError
from relay.jobs import JobFailed, ToolFailure
from relay.output import OutputFilter, OutputSpec, ToolCall, check_json, correction
from sites import lmarena as site

if TYPE_CHECKING:
    from relay.engine import Replay, ReplayEngine


@dataclass(frozen=True)
class Part:
    kind: Literal["text", "reasoning", "image", "call"]
    text: str = ""
    call: ToolCall | None = None


@dataclass
class AnswerReader:
    engine: ReplayEngine
    replay: Replay
    spec: OutputSpec = field(default_factory=OutputSpec)
    site_finish: str = "stop"
    usage: dict[str, int] | None = None  # the site's own counts, when its finish line has them
    sources: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""  # everything shown as text (for usage estimates)

    def __post_init__(self) -> None:
        self.filter = OutputFilter(self.spec)

    @property
    def calls(self) -> list[ToolCall]:
        return self.filter.calls

    def finish_reason(self) -> str:
        return self.filter.finish(self.site_finish)

    async def parts(self) -> AsyncIterator[Part | JobFailed]:
        failed = None
        async for part in self._read(self.replay):
            if isinstance(part, JobFailed):
                failed = part
                break
            yield self._shown(part)
        if failed is not None:
            yield failed
            return
        for piece in self.filter.close():
            yield self._shown(Part("text", piece[1]) if piece[0] == "text" else Part("call", call=piece[1]))
        if self.spec.json:
            yield await self._checked_json()

    def _shown(self, part: Part) -> Part:
        if part.kind == "text":
            self.text += part.text
        return part

    async def _read(self, replay: Replay) -> AsyncIterator[Part | JobFailed]:
        """The replay's parts until it ends, fails, or the client's limits are reached (then the site is
        told to stop)."""
        items = self.engine.items(replay)
        side = replay.side
        try:
            async for item in items:
                if isinstance(item, JobFailed):
                    yield item
                    return
                if not isinstance(item, site.StreamEvent) or item.side != side:
                    continue
                for part in self._event(item):
                    yield part
                if item.kind == "error":
                    kind = site.stream_error_kind(item.text)
                    yield JobFailed(f"the answer failed: {item.text}", 502, kind, source="upstream")
                    return
                if self.filter.done:
                    self.engine.stop_early(replay)
                    return
        finally:
            await items.aclose()

    def _event(self, event: site.StreamEvent) -> list[Part]:
        if event.kind == "reasoning" and event.text:
            return [Part("reasoning", event.text)]
        if event.kind == "image" and event.text:
            return [Part("image", event.text)]
        if event.kind == "text" and event.text:
            return [Part("text", p[1]) if p[0] == "text" else Part("call", call=p[1])
                    for p in self.filter.feed(event.text)]
        if event.kind == "citation":
            self._cite(event.data)
        elif event.kind == "finish":
            self.site_finish = site.openai_finish_reason(event.text)
            self.usage = site.usage_of(event)
        return []

    def _cite(self, data: Any) -> None:
        # the site sends each source as it is cited, and the whole list at the end
        for source in data if isinstance(data, list) else [data]:
            if not isinstance(source, dict) or not source.get("url"):
                continue
            entry = {"url": source["url"], "title": source.get("title") or source["url"]}
            for known in self.sources:
                if known["url"] == entry["url"]:
                    if source.get("title"):
                        known["title"] = source["title"]
                    break
            else:
                self.sources.append(entry)

    async def _checked_json(self) -> Part | JobFailed:
        """The JSON answer, checked; asked for once more with what was wrong; else a failure."""
        answer = "".join(self.filter.held)
        shown, error = check_json(answer, self.spec)
        if error is not None:
            retry = self.replay.turns + [site.ChatTurn("assistant", answer),
                                         site.ChatTurn("user", correction(error, self.spec))]
            again = await self._answer_of(retry)
            if isinstance(again, JobFailed):
                return again
            shown, error = check_json(again, self.spec)
        if shown is None:
            return JobFailed(f"the model's answer is not the JSON asked for, also after one retry: {error}", 502,
                             ToolFailure.OUTPUT_INVALID, source="upstream")
        return self._shown(Part("text", shown))

    async def _answer_of(self, turns: list[site.ChatTurn]) -> str | JobFailed:
        """A whole new answer to `turns` (the corrective retry), as text."""
        try:
            replay = await self.engine.start(self.replay.model, turns, self.replay.record)
        except RelayError as e:
            return JobFailed(f"the corrective retry could not be sent: {e.message}", 502, ToolFailure.TOOL_ERROR,
                             source="tool")
        text = []
        items = self.engine.items(replay)
        try:
            async for item in items:
                if isinstance(item, JobFailed):
                    return item
                if isinstance(item, site.StreamEvent) and item.side == replay.side and item.kind == "text":
                    text.append(item.text)
        finally:
            await items.aclose()
        return "".join(text)
