"""Parsers of option values: pure functions that return the parsed value or raise ValueError.

The addons declare the options and turn a ValueError into mitmproxy's OptionsError; every parser is
tested here with the bad values a person may type.
"""

from __future__ import annotations

import math
import os
import re

from sites import lmarena as site

_ROUTE_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_ACTION = re.compile(r"[A-Za-z_/]+")
_ACTION_ID = re.compile(r"[0-9a-f]{40,44}")


def parse_seconds(raw: str, positive: bool = False) -> float:
    """A duration: mitmproxy's --set has no float type, so durations are strings of seconds."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"a number of seconds, not {raw!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{'a positive' if positive else 'zero or a positive'} number of seconds, not {raw!r}")
    return value


def parse_int_range(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"between {low} and {high}, not {value}")
    return value


def parse_api_keys(value: str) -> list[str]:
    """Comma-separated keys, or `@path` of a file with one key per line (# starts a comment)."""
    value = value.strip()
    if value.startswith("@"):
        path = os.path.expanduser(value[1:])
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror}") from e
        keys = [k.strip() for k in lines if k.strip() and not k.strip().startswith("#")]
        if not keys:
            raise ValueError(f"{path} holds no key")
        return keys
    return [k.strip() for k in value.split(",") if k.strip()]


def parse_aliases(value: str) -> dict[str, str]:
    """`alias=model,alias2=model2` → {alias: model}."""
    aliases = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        alias, sep, model = pair.partition("=")
        if not sep or not alias.strip() or not model.strip():
            raise ValueError(f"{pair!r} is not alias=model")
        aliases[alias.strip()] = model.strip()
    return aliases


def parse_route_prefix(value: str) -> str:
    prefix = value.rstrip("/")
    if not _ROUTE_PREFIX.match(prefix):
        raise ValueError(f"a path such as /arena, not {value!r}")
    return prefix


def parse_upload_actions(value: str) -> str:
    ids = [i.strip() for i in value.split(",") if i.strip()]
    if ids and (len(ids) != 2 or not all(_ACTION_ID.fullmatch(i) for i in ids)):
        raise ValueError("two hex action ids, comma-separated: generateUploadUrl,getSignedUrl")
    return ",".join(ids)


def parse_sitekey(value: str) -> str:
    """Empty: the page finds the key the site uses. Else the key to use instead."""
    if value and not site.looks_like_sitekey(value):
        raise ValueError(f"{value!r} does not look like a reCAPTCHA key")
    return value


def parse_recaptcha_actions(value: str) -> site.RecaptchaActions:
    actions = [a.strip() for a in value.split(",")]
    if len(actions) != 2 or not all(_ACTION.fullmatch(a) for a in actions):
        raise ValueError("two actions, for create/post then retry, e.g. chat_submit,chat_retry")
    return site.RecaptchaActions(submit=actions[0], retry=actions[1])


def parse_hosts(value: str) -> frozenset[str]:
    hosts = frozenset(h.strip().lower() for h in value.split(",") if h.strip())
    if not hosts:
        raise ValueError("name at least one host")
    return hosts


def parse_stream_prefixes(value: str) -> tuple[str, ...]:
    prefixes = tuple(p.strip() for p in value.split(",") if p.strip())
    if not prefixes or not all(p.startswith("/") and p.endswith("/") for p in prefixes):
        raise ValueError("each prefix starts and ends with '/'")
    return prefixes


def parse_choice(value: str, choices: tuple[str, ...]) -> str:
    """One of the choices (mitmproxy declares them, but accepts any value given with --set)."""
    if value not in choices:
        raise ValueError(f"one of {', '.join(choices)}, not {value!r}")
    return value


def parse_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value
