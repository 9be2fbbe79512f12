"""The README documents every option once, with the default the code really has."""

from __future__ import annotations

import re
from pathlib import Path

from mitmproxy.addonmanager import Loader
from mitmproxy.test import taddons

from addons.api_server import DEFAULT_LOGS, DEFAULT_STORE
from addons.bridge import build

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_options() -> dict[str, str]:
    rows = re.findall(r"^\| `(arena_[a-z_]+)` \| ([^|]*) \|", README.read_text("utf-8"), re.M)
    return {name: default.strip() for name, default in rows}


def shown(value: object) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return "(empty)"
    if value == DEFAULT_STORE:
        return "`data/pool.json`"
    if value == DEFAULT_LOGS:
        return "`data/logs`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_every_option_is_in_the_readme_with_its_default():
    with taddons.context() as tctx:
        for addon in build():
            if hasattr(addon, "load"):
                addon.load(Loader(tctx.master))  # declare only: no configure, no files touched
        declared = {name: tctx.options.default(name) for name in tctx.options.keys() if name.startswith("arena_")}
    documented = readme_options()
    assert set(documented) == set(declared), "README options table and the code disagree"
    for name, default in declared.items():
        assert documented[name] == shown(default), name


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text("utf-8")
    assert "bash scripts/run.sh" in text and "bash scripts/test.sh" in text
    ci = (README.parent / ".ci" / "run").read_text("utf-8")
    assert "exec bash scripts/test.sh" in ci
    # the run command is proven in a base install before the test extras arrive, and the demo runs
    assert ci.index("bash scripts/check_run.sh") < ci.index("bash scripts/demo.sh") < ci.index("exec bash")
