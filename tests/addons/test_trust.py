"""Trust: what browsers' connections tell the doctor. An arena host whose TLS handshake the browser refused is
counted (the CA is not trusted there); another site's refusal is none of the tool's business; an arena request
after Classify marks that a browser does use the proxy."""

from __future__ import annotations

import pytest
from mitmproxy import connection, tls

from addons.classify import Classify
from addons.trust import Trust
from relay.settings import SiteObservations
from tests.addons.flows import make_flow


def refused(sni: str) -> tls.TlsData:
    client = connection.Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080), sni=sni)
    return tls.TlsData(client, context=None)  # type: ignore[arg-type]


@pytest.fixture
def classify(mitmproxy_context) -> Classify:
    classify = Classify()  # its arena_hosts option is the one Trust reads
    mitmproxy_context.master.addons.add(classify)
    mitmproxy_context.configure(classify, arena_hosts="lmarena.ai,arena.ai")
    return classify


def test_refused_handshakes_on_arena_hosts_are_counted(classify):
    observed = SiteObservations()
    trust = Trust(observed)
    for sni in ("arena.ai", "www.arena.ai", "arena.ai", "example.com", "notarena.ai", ""):
        trust.tls_failed_client(refused(sni))
    assert set(observed.untrusted) == {"arena.ai", "www.arena.ai"}
    assert observed.untrusted["arena.ai"][0] == 2 and observed.untrusted["www.arena.ai"][0] == 1


def test_an_arena_request_marks_the_browser_as_using_the_proxy(classify):
    observed = SiteObservations()
    trust = Trust(observed)
    other = make_flow("GET", "https://example.com/")
    classify.requestheaders(other)
    trust.requestheaders(other)
    assert observed.last_arena_request == 0
    page = make_flow("GET", "https://arena.ai/text/direct")
    classify.requestheaders(page)
    trust.requestheaders(page)
    assert observed.last_arena_request > 0
