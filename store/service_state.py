"""Shared facts every process must see: e.g. that Slack delivery is paused (a revoked token)."""

from __future__ import annotations

from store.db import Database
from store.models import ServiceState, utcnow

SLACK_PAUSED = "slack_paused"


def slack_paused(db: Database) -> str | None:
    """The reason Slack delivery is paused, or None when it flows."""
    with db.read() as session:
        state = session.get(ServiceState, SLACK_PAUSED)
        if state is None or not state.value.get("paused"):
            return None
        return str(state.value.get("reason", "paused"))


def set_slack_paused(db: Database, reason: str | None) -> None:
    with db.transaction() as session:
        state = session.get(ServiceState, SLACK_PAUSED)
        value = {"paused": reason is not None, "reason": reason}
        if state is None:
            session.add(ServiceState(key=SLACK_PAUSED, value=value, updated_at=utcnow()))
        else:
            state.value = value
            state.updated_at = utcnow()
