"""What Slack's Web API errors mean to the desk, named once for every caller."""

from __future__ import annotations

# A token Slack refuses for good (not Slack being unreachable): a setting to fix, not a retry.
REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
