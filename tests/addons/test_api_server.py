"""ApiServer's options: every bad value stops start-up with the option's name and what is wrong."""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy import exceptions

from addons.api_server import ApiServer
from addons.channel import ApiAddress
from relay.core import assemble
from tests.addons.conftest import add_addon


@pytest.fixture
def server(mitmproxy_context) -> ApiServer:
    return add_addon(mitmproxy_context, ApiServer(assemble(), ApiAddress()))


@pytest.mark.parametrize("option,bad,says", [
    ("arena_api_key", "@/nonexistent/keys.txt", "cannot read"),
    ("arena_queue_timeout", "two minutes", "number of seconds"),
    ("arena_queue_timeout", "0", "positive"),
    ("arena_upstream_timeout", "-5", "positive"),
    ("arena_keepalive", "0", "positive"),
    ("arena_page_wait", "-1", "zero or a positive"),
    ("arena_page_wait", "nan", "zero or a positive"),
    ("arena_failover_tries", 0, "between 1 and 10"),
    ("arena_failover_tries", 11, "between 1 and 10"),
    ("arena_api_port", 70000, "between 0 and 65535"),
    ("arena_log_max_mb", 0, "between 1 and"),
])
def test_bad_values(mitmproxy_context, server, option, bad, says):
    with pytest.raises(exceptions.OptionsError, match=f"{option}: .*{says}"):
        mitmproxy_context.configure(server, **{option: bad})


def test_good_values_reach_the_settings(mitmproxy_context, server, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# my clients\nsk-one\n\nsk-two\n")
    mitmproxy_context.configure(server, arena_api_key=f"@{keys}", arena_queue_timeout="2.5", arena_page_wait="0",
                                arena_failover_tries=2)
    settings = server.services.settings
    assert settings.api_keys == ["sk-one", "sk-two"]
    assert (settings.queue_timeout, settings.page_wait, settings.failover_tries) == (2.5, 0.0, 2)


def test_an_empty_key_file_is_refused_rather_than_leaving_the_api_open(mitmproxy_context, server, tmp_path):
    empty = tmp_path / "keys.txt"
    empty.write_text("# nothing yet\n")
    with pytest.raises(exceptions.OptionsError, match="arena_api_key: .*holds no key"):
        mitmproxy_context.configure(server, arena_api_key=f"@{empty}")


def test_a_pool_file_that_does_not_parse_is_an_option_error(mitmproxy_context, server, tmp_path):
    broken = tmp_path / "pool.json"
    broken.write_text("{not json")
    with pytest.raises(exceptions.OptionsError, match="arena_store: cannot open"):
        mitmproxy_context.configure(server, arena_store=str(broken))
    assert server.store_path != str(broken), "nothing was switched to the broken file"
    assert broken.read_text() == "{not json", "and nothing was written over it"


async def test_api_connections_have_nagle_off_so_kept_alive_responses_wait_for_no_delayed_ack(mitmproxy_context):
    """Regression: the API's socket was made with proto 0, asyncio then left Nagle on, and every response
    on a kept-alive connection (the SDK's, the page channel's) waited ~40 ms for a delayed ACK."""
    import socket

    server = add_addon(mitmproxy_context, ApiServer(assemble(), ApiAddress()), arena_api_port=0)
    await server.running()
    assert server.server is not None
    for _ in range(200):  # uvicorn starts in a task of its own
        if server.server.started:
            break
        await asyncio.sleep(0.01)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        accepted = [c.transport.get_extra_info("socket") for c in server.server.server_state.connections]
        assert accepted and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)
        writer.close()
    finally:
        await server.done()
