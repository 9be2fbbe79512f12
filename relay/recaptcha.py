"""Why the site refused a token the page minted, from what the page reported about it.

The site answers every refusal with the same 403 "recaptcha validation failed"; the page knows which
key it used, where that key came from, when the token was minted and sent, and which key the site's own
code uses now. That tells a wrong key from an expired token from a low score.
"""

from __future__ import annotations

from typing import Any

TOKEN_LIFETIME_MS = 110_000  # the site takes a token for about two minutes


def diagnose(report: dict[str, Any] | None, site_key: str | None) -> tuple[str, str]:
    """(reason, advice) for a refused token. `site_key`: the key the page saw the site using."""
    if not report:
        return "unknown", "the page sent no report of its token: reload the arena.ai tab"
    key, source = report.get("key"), report.get("source")
    if not key or report.get("error"):
        return "no_token", (f"the page could not mint a token ({report.get('error') or 'no key'}): reCAPTCHA did "
                            "not load, or the tab is in the background; bring the arena.ai tab to the front")
    if source == "option" and site_key and site_key != key:
        return "wrong_key", (f"arena_recaptcha_sitekey is {key}, but the site now uses {site_key}: clear the option "
                             "so the page uses the site's own key")
    if source == "fallback":
        return "wrong_key", (f"the page did not find the site's key and used the built-in {key}, which the site may "
                             "no longer use: reload the arena.ai tab, or set arena_recaptcha_sitekey")
    minted, sent = report.get("mintedAt"), report.get("sentAt")
    if isinstance(minted, (int, float)) and isinstance(sent, (int, float)) and sent - minted > TOKEN_LIFETIME_MS:
        return "expired", f"the token was {(sent - minted) / 1000:.0f} s old when sent; the site takes about 120 s"
    return "low_score", ("the site's reCAPTCHA scored this browser low: send one message by hand in the arena.ai "
                         "tab, keep the tab in the foreground, and avoid a VPN or a datacenter IP")
