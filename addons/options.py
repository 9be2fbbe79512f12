"""Options the mitmproxy way: each addon declares its own; values are parsed by the pure functions of
relay/options.py, whose ValueError becomes mitmproxy's OptionsError here."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from mitmproxy import ctx, exceptions

T = TypeVar("T")


def parsed(name: str, parse: Callable[..., T], *args: Any) -> T:
    """The option's current value through `parse`; a bad value stops start-up (or the `--set`) with
    the option's name and what is wrong."""
    try:
        return parse(getattr(ctx.options, name), *args)
    except ValueError as e:
        raise exceptions.OptionsError(f"{name}: {e}") from e
