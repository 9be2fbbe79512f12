"""Classify: arena flows are recognised by their original host; stream calls by method and path."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from addons.classify import META_CALL, META_CHANNEL, META_HOST, Classify
from tests.addons.flows import make_flow


def test_classify_marks_arena_flows_only(mitmproxy_context):
    classify = Classify()
    mitmproxy_context.master.addons.add(classify)
    mitmproxy_context.configure(classify, arena_hosts="lmarena.ai,arena.ai")
    flow = make_flow("POST", "https://lmarena.ai/nextjs-api/stream/create-evaluation", b"{}")
    classify.requestheaders(flow)
    assert flow.metadata[META_HOST] == "lmarena.ai"
    assert flow.metadata[META_CALL].kind == "create"
    assert flow.request.headers["accept-encoding"] == "identity"
    other = make_flow("POST", "https://example.com/nextjs-api/stream/create-evaluation", b"{}")
    classify.requestheaders(other)
    assert META_HOST not in other.metadata and META_CALL not in other.metadata
    channel = make_flow("GET", "https://arena.ai/__bridge/ws")
    classify.requestheaders(channel)
    assert channel.metadata[META_CHANNEL] is True


@pytest.mark.parametrize("option,bad,says", [
    ("arena_hosts", " , ", "at least one host"),
    ("arena_stream_prefixes", "nextjs-api/stream", "starts and ends with '/'"),
    ("arena_stream_prefixes", "/nextjs-api/stream/,", None),  # an empty entry is dropped: valid
])
def test_classify_options(mitmproxy_context, option, bad, says):
    classify = Classify()
    mitmproxy_context.master.addons.add(classify)
    if says is None:
        mitmproxy_context.configure(classify, **{option: bad})
        return
    with pytest.raises(exceptions.OptionsError, match=f"{option}: .*{says}"):
        mitmproxy_context.configure(classify, **{option: bad})
