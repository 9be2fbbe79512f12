from __future__ import annotations

from typing import Any

import pytest
from mitmproxy.addonmanager import Loader
from mitmproxy.test import taddons

from relay.services import Services


@pytest.fixture(autouse=True)
def mitmproxy_context():
    # mitmproxy's log handler needs a live master for the whole test
    with taddons.context() as tctx:
        yield tctx


@pytest.fixture
def services() -> Services:
    return Services()


def add_addon(tctx: Any, addon: Any, **values: Any) -> Any:
    """Register an addon with some of its options set first. A failed `configure` rolls the options
    back, which configures them again with their earlier value: the defaults of some (the pool file,
    the log folder) are paths in the project folder, which a test must never touch, so the pool lives
    in memory and there are no log files unless a test says otherwise."""
    addon.load(Loader(tctx.master))
    tctx.options.update(**{"arena_store": "", "arena_log_dir": "", **values} if hasattr(addon, "_open_store")
                        else values)
    tctx.master.addons.add(addon)
    return addon
