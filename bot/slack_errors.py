"""What Slack's Web API errors mean to the desk, named once for every caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A token Slack refuses for good (not Slack being unreachable): a setting to fix, not a retry.
REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
# An app token Slack refuses: one refused as a token, or a bot token given as the app token.
REFUSED_APP_TOKEN = REFUSED_TOKEN | {"not_allowed_token_type"}


def retry_after(headers: Mapping[str, Any], default: float) -> float:
    """Seconds a 429's `Retry-After` asks to wait; `default` when it says nothing usable."""
    try:
        return max(float(headers.get("Retry-After", default)), 0.0)
    except (TypeError, ValueError):
        return default
