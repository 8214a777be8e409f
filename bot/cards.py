"""A ticket's card as plain data (`CardView`), read from the store when the card is posted.

The card performer calls this at delivery time, so a card reflects every change made before it
runs (one waiting card row covers any number of changes).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.blocks.data import CardView, TicketLinkView
from store.actions import all_labels, links_of
from store.models import Customer, Organization, Origin, Ticket
from store.queries import repeat_requests

ORIGIN_LABELS = {
    Origin.EMAIL.value: "Email",
    Origin.SLACK.value: "Slack",
    Origin.WEB.value: "Web form",
    Origin.STAFF.value: "Opened by staff",
}


def _contact(customer: Customer) -> str | None:
    # The card escapes this text, so a Slack mention would show as markup: a Slack customer is
    # shown by name alone.
    return customer.email


def _origin_label(ticket: Ticket, customer: Customer, organization: Organization | None) -> str:
    label = ORIGIN_LABELS.get(ticket.origin, ticket.origin)
    if ticket.origin == Origin.SLACK.value and organization is not None and organization.slack_team_id:
        # A customer from another Slack team writes over Slack Connect.
        return f"{label} Connect ({organization.name})"
    return label


def card_view(session: Session, ticket: Ticket) -> CardView:
    customer = session.get(Customer, ticket.requester_id)
    assert customer is not None, "a ticket always has its requester"
    organization = session.get(Organization, customer.organization_id) if customer.organization_id else None
    merged_into = session.get(Ticket, ticket.merged_into_id) if ticket.merged_into_id else None
    links = tuple(
        TicketLinkView(kind=kind, target_number=other.number if other else None, url=url)
        for kind, other, url in links_of(session, ticket)
    )
    return CardView(
        number=ticket.number,
        subject=ticket.subject,
        requester_name=customer.name or customer.email or "Unknown requester",
        requester_contact=_contact(customer),
        organization=organization.name if organization else None,
        origin=ticket.origin,
        origin_label=_origin_label(ticket, customer, organization),
        status=ticket.status,
        priority=ticket.priority,
        assignee_user_id=ticket.assignee_slack_id,
        labels=tuple(label.name for label in ticket.labels),
        available_labels=tuple(label.name for label in all_labels(session)),
        links=links,
        repeat_requests_30d=repeat_requests(session, ticket),
        merged_into=merged_into.number if merged_into else None,
        created_at=ticket.created_at,
    )
