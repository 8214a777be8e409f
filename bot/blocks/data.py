"""Plain data the Block Kit builders render: filled in by listeners from store rows, so the
builders stay pure and are tested as data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

STATUSES = ("open", "pending", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
LINK_KINDS = ("relates", "duplicates", "blocks", "duplicated_by", "blocked_by")


@dataclass(frozen=True)
class TicketLinkView:
    kind: str  # relates|duplicates|blocks|duplicated_by|blocked_by
    target_number: int | None  # a ticket of ours …
    url: str | None  # … or an issue anywhere else


@dataclass(frozen=True)
class CardView:
    number: int
    subject: str
    requester_name: str
    requester_contact: str | None  # email address or Slack handle
    organization: str | None
    origin: str  # "email" | "slack" | "web" | "staff"
    origin_label: str | None  # e.g. "#acme-support (Slack Connect)" or "email"
    status: str  # open|pending|resolved|closed
    priority: str  # low|normal|high|urgent
    assignee_user_id: str | None
    labels: tuple[str, ...]
    available_labels: tuple[str, ...]
    links: tuple[TicketLinkView, ...]
    repeat_requests_30d: int  # this requester's tickets in the last 30 days, this one included
    merged_into: int | None
    created_at: datetime


@dataclass(frozen=True)
class TicketSummary:
    """One ticket in a list: App Home, ``/desk list`` and ``/desk search``."""

    number: int
    subject: str
    status: str
    priority: str
    assignee_user_id: str | None
    requester_name: str
    permalink: str | None  # the triage thread
    created_at: datetime
    updated_at: datetime
    waiting_since: datetime | None = None  # the customer's last unanswered message


@dataclass(frozen=True)
class Metric:
    label: str  # "Open", "Median first response"
    value: str  # already formatted: "12", "1h 20m"


@dataclass(frozen=True)
class HomeView:
    user_id: str
    my_open: tuple[TicketSummary, ...]
    unassigned: tuple[TicketSummary, ...]
    oldest_waiting: tuple[TicketSummary, ...]
    recently_changed: tuple[TicketSummary, ...]
    metrics: tuple[Metric, ...]
    now: datetime
    # How many tickets each queue holds, when more were left unread than the section shows.
    my_open_total: int | None = None
    unassigned_total: int | None = None
    waiting_total: int | None = None
