"""Store rows as the plain data the Block Kit builders render, and names for Slack ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.blocks.data import TicketSummary
from store import queries
from store.models import Ticket


def thread_permalink(workspace_url: str | None, ticket: Ticket) -> str | None:
    """The triage thread's link, in the form chat.getPermalink answers, without a call per ticket
    (a home tab or a list shows dozens; Slack's rate limits are the desk's hard ceiling)."""
    if not (workspace_url and ticket.triage_channel and ticket.triage_ts):
        return None
    return thread_link(workspace_url, ticket.triage_channel, ticket.triage_ts)


def thread_link(workspace_url: str, channel: str, thread_ts: str) -> str:
    """A thread's link, as chat.getPermalink gives it, from the workspace's base URL."""
    base = workspace_url if workspace_url.endswith("/") else workspace_url + "/"
    return f"{base}archives/{channel}/p{thread_ts.replace('.', '')}"


def ticket_summary(
    ticket: Ticket, workspace_url: str | None, *, waiting_since: datetime | None = None
) -> TicketSummary:
    return TicketSummary(
        number=ticket.number,
        subject=ticket.subject,
        status=ticket.status,
        priority=ticket.priority,
        assignee_user_id=ticket.assignee_slack_id,
        requester_name=ticket.requester.name or ticket.requester.email or "",
        permalink=thread_permalink(workspace_url, ticket),
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        waiting_since=waiting_since,
    )


@dataclass(frozen=True)
class StoreMentionResolver:
    """Names for the ids a command's text mentions, from the profile cache; an unknown id stays
    an id (a note is stored even when a name cannot be found)."""

    session: Session

    def user_name(self, user_id: str) -> str:
        return queries.display_name(queries.slack_user(self.session, user_id), user_id)

    def channel_name(self, channel_id: str) -> str:
        return channel_id

    def usergroup_handle(self, usergroup_id: str) -> str:
        return usergroup_id
