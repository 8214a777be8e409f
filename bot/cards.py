"""A ticket's card as plain data (`CardView`), read from the store when the card is posted.

The card performer calls this at delivery time, so a card reflects every change made before it
runs (one waiting card row covers any number of changes).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, aliased

from bot.blocks.data import CardView, TicketLinkView
from store.actions import label_names, links_of
from store.models import Customer, Organization, Origin, Ticket
from store.queries import repeat_requests

ORIGIN_LABELS = {
    Origin.EMAIL.value: "Email",
    Origin.SLACK.value: "Slack",
    Origin.WEB.value: "Web form",
    Origin.STAFF.value: "Opened by staff",
}


def _origin_label(ticket: Ticket, organization: str | None, organization_team: str | None) -> str:
    label = ORIGIN_LABELS.get(ticket.origin, ticket.origin)
    if ticket.origin == Origin.SLACK.value and organization is not None and organization_team:
        # A customer from another Slack team writes over Slack Connect.
        return f"{label} Connect ({organization})"
    return label


def card_view(session: Session, ticket: Ticket) -> CardView:
    # Core rows from statements built once (every card post and update reads all of this):
    # the requester with their organization and the merged-into number, then labels and links.
    requester = session.execute(
        _requester_query(), {"requester_id": ticket.requester_id, "merged_into_id": ticket.merged_into_id}
    ).one()
    available, labels = label_names(session, ticket)
    links = tuple(
        TicketLinkView(kind=kind, target_number=number, url=url)
        for kind, number, url in links_of(session, ticket)
    )
    return CardView(
        number=ticket.number,
        subject=ticket.subject,
        requester_name=requester.name or requester.email or "Unknown requester",
        # The card escapes this text, so a Slack mention would show as markup: a Slack customer is
        # shown by name alone.
        requester_contact=requester.email,
        organization=requester.organization,
        origin=ticket.origin,
        origin_label=_origin_label(ticket, requester.organization, requester.organization_team),
        status=ticket.status,
        priority=ticket.priority,
        assignee_user_id=ticket.assignee_slack_id,
        labels=tuple(labels),
        available_labels=tuple(available),
        links=links,
        repeat_requests_30d=repeat_requests(session, ticket),
        merged_into=requester.merged_into,
        created_at=ticket.created_at,
    )


@functools.cache
def _requester_query() -> Select[*tuple[Any, ...]]:
    merged = aliased(Ticket)
    merged_number = select(merged.number).where(merged.id == bindparam("merged_into_id")).scalar_subquery()
    return (
        select(
            Customer.name,
            Customer.email,
            Organization.name.label("organization"),
            Organization.slack_team_id.label("organization_team"),
            merged_number.label("merged_into"),
        )
        .outerjoin(Organization, Organization.id == Customer.organization_id)
        .where(Customer.id == bindparam("requester_id"))
    )
