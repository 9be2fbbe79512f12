"""The whole tool in one mitmproxy script:

    mitmdump -s addons/bridge.py --set confdir=certs --listen-host 127.0.0.1 \
             --allow-hosts '^(.+\\.)?(lm)?arena\\.ai(:443)?$'

Proxy, injection, capture, rewriting and the OpenAI-compatible API all run in this one process,
which alone owns the pool file.
"""

from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

if sys.version_info < (3, 12):  # pragma: no cover - guarded for people running an old mitmproxy
    raise SystemExit("lmarena-enhanced-proxy needs Python 3.12 or newer (mitmproxy 12.2)")

from addons.api_options import ApiOptions  # noqa: E402
from addons.api_server import ApiServer  # noqa: E402
from addons.capture import Capture  # noqa: E402
from addons.channel import ApiAddress, Channel  # noqa: E402
from addons.classify import Classify  # noqa: E402
from addons.console_view import ConsoleView  # noqa: E402
from addons.inject import Injector  # noqa: E402
from addons.prefill import PrefillAddon  # noqa: E402
from addons.rewrite import Rewriter  # noqa: E402
from addons.trust import Trust  # noqa: E402
from relay.core import assemble  # noqa: E402
from relay.services import Services  # noqa: E402


def build(services: Services | None = None) -> list[object]:
    """The composition root: the core assembled once (relay.core.assemble wires who tells whom), and
    the addons, each given only what it needs. The order is the order of mitmproxy's hooks."""
    core = assemble(services)
    services = core.services
    address = ApiAddress()
    return [
        Classify(),
        Trust(services.observed),
        Channel(address),
        Injector(services.pages, services.models, services.drift),
        Rewriter(services.jobs),
        Capture(services),
        ApiOptions(services, core.canary),
        ApiServer(core, address),
        PrefillAddon(services, core.prefiller),
        ConsoleView(services, core.monitor, address),
    ]


addons = build()
