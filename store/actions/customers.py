"""Customers and their organizations, found or created from an email address or a Slack user."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, bindparam, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store import outbox
from store.actions.common import check_address, update_card
from store.models import Customer, Organization, Outbox, OutboxState, Ticket
from store.outbox import Kind

# Mail providers whose users share nothing but the provider: no organization from the domain.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "web.de",
        "mail.com",
        "yandex.ru",
        "qq.com",
        "163.com",
        "126.com",
        "localhost",
    }
)


Row = TypeVar("Row", Organization, Customer)


def _insert_or_get(session: Session, row: Row, existing: Callable[[], Row | None]) -> Row:
    """Insert `row`, or return the one a concurrent transaction inserted first (unique key race)."""
    if session.get_bind().dialect.name == "sqlite":
        # A SQLite write transaction holds the write lock from its BEGIN IMMEDIATE: no other one
        # can insert the same key after our read, so there is no race to fall back from.
        session.add(row)
        session.flush()
        return row
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return found


def _mail_domain(domain: str) -> str | None:
    """The domain an organization is named after, or None for a public mail provider."""
    domain = domain.lower()
    return None if not domain or domain in PUBLIC_MAIL_DOMAINS else domain


def organization_for_domain(session: Session, domain: str) -> Organization | None:
    found = _mail_domain(domain)
    if found is None:
        return None
    return _organization(session, found, session.scalar(_by_domain(found)))


def _by_domain(domain: str) -> Select[Organization]:
    return select(Organization).where(Organization.email_domain == domain)


def _organization(session: Session, domain: str, found: Organization | None) -> Organization:
    """`found`, or the organization of `domain` created now."""
    if found is not None:
        return found
    query = _by_domain(domain)
    return _insert_or_get(
        session, Organization(name=domain, email_domain=domain), lambda: session.scalar(query)
    )


def _by_team(team_id: str) -> Select[Organization]:
    return select(Organization).where(Organization.slack_team_id == team_id)


def organization_for_team(
    session: Session, team_id: str, name: str | None = None, *, domain: str | None = None
) -> Organization:
    """The organization of a Slack team that is not ours.

    `domain` is a member's mail domain, when Slack shows their email (not a public provider's):
    the team and the domain are one company, so the desk keeps one organization for both. The
    domain's organization (known from email) takes the team; a team first met in Slack gets the
    domain too, so mail from it later joins; and an organization made for the team while only its
    id was known is folded into the domain's. `name` names an organization made without a domain
    (else it is the team's id)."""
    team = session.scalar(_by_team(team_id))
    by_domain = session.scalar(_by_domain(domain)) if domain else None
    # The domain's organization is free to take this team unless another team has it (two Slack
    # teams of one company): then this team's stays its own, without the domain.
    free = domain if by_domain is None else None
    if by_domain is not None and by_domain.slack_team_id not in (None, team_id):
        by_domain = None
    if team is None:
        if by_domain is not None:
            by_domain.slack_team_id = team_id
            return by_domain
        shown = free or (name if name and _mail_domain(name) else None) or team_id
        return _insert_or_get(
            session,
            Organization(name=shown, slack_team_id=team_id, email_domain=free),
            lambda: session.scalar(_by_team(team_id)),
        )
    if team.email_domain is not None or by_domain is team:
        return team
    if by_domain is not None and team.name == team_id:
        return _fold_into(session, team, by_domain, team_id)
    if free is not None:
        team.email_domain = free
    named = free or (name if name and _mail_domain(name) else None)
    if named and team.name == team_id:
        team.name = named
        _redraw_cards(session, team)  # they show the organization by its id until then
    return team


def _fold_into(session: Session, placeholder: Organization, kept: Organization, team_id: str) -> Organization:
    """`placeholder` (a team's organization named by its id) merged into `kept`, which takes the team."""
    session.execute(
        update(Customer).where(Customer.organization_id == placeholder.id).values(organization_id=kept.id)
    )
    placeholder.slack_team_id = None
    session.flush()  # the team's unique id is free before `kept` takes it
    kept.slack_team_id = team_id
    session.delete(placeholder)
    session.flush()
    _redraw_cards(session, kept)  # those of the placeholder's customers show it by the team's id
    return kept


# Most cards one organization's new name redraws: its latest tickets' (older ones take it at their
# next change), so a large organization does not flood the triage channel's posting allowance.
REDRAWN_CARDS = 50


def _redraw_cards(session: Session, organization: Organization) -> None:
    """The cards of the organization's latest tickets drawn again: they show its name."""
    tickets = session.scalars(
        select(Ticket)
        .join(Customer, Ticket.requester_id == Customer.id)
        .where(Customer.organization_id == organization.id)
        .order_by(Ticket.id.desc())
        .limit(REDRAWN_CARDS)
    ).all()
    for ticket in tickets:
        update_card(session, ticket)


def customer_for_email(session: Session, email: str, name: str = "") -> Customer:
    """The customer with this address, created on first contact (named from the From header)."""
    email = check_address(email)
    domain = _mail_domain(email.rpartition("@")[2])
    customer, organization = _customer_and_organization(session, email, domain)
    if customer is None:
        if domain is not None:
            organization = _organization(session, domain, organization)
        fresh = Customer(
            email=email,
            name=name or email.partition("@")[0],
            organization_id=organization.id if organization else None,
        )
        # Two first mails from one address (or a mail and `/desk new`) can race on PostgreSQL.
        customer = _insert_or_get(session, fresh, lambda: session.scalar(_by_email(), {"email": email}))
    elif name and customer.email and customer.name == customer.email.partition("@")[0]:
        # First seen without a display name (e.g. added by Cc); now we know it.
        customer.name = name
    return customer


def _customer_and_organization(
    session: Session, email: str, domain: str | None
) -> tuple[Customer | None, Organization | None]:
    """The customer with this address and the organization of `domain`, in one round trip: a first
    contact needs both (each a unique-index probe), a known customer only the first."""
    if domain is None:
        return session.scalar(_by_email(), {"email": email}), None
    row = session.execute(_customer_and_organization_query(), {"email": email, "domain": domain}).one()
    return row[0], row[1]


# Built once: every email looks its sender up, and building a select costs more than running it.
@functools.cache
def _by_email() -> Select[Customer]:
    return select(Customer).where(Customer.email == bindparam("email"))


@functools.cache
def _customer_and_organization_query() -> Select[Customer, Organization]:
    probe = select(literal(1).label("probe")).subquery()
    return (
        select(Customer, Organization)
        .select_from(probe)
        .outerjoin(Customer, Customer.email == bindparam("email"))
        .outerjoin(Organization, Organization.email_domain == bindparam("domain"))
    )


def customer_for_slack_user(
    session: Session,
    user_id: str,
    *,
    name: str,
    team_id: str | None,
    email: str | None = None,
    home_team_id: str | None = None,
    team_name: str | None = None,
    known: bool = True,
) -> Customer:
    """The customer for a Slack user; their organization is their team when it is not ours.

    `known` False: Slack did not say who they are (`name` is their id): a new customer is stored
    so, but a known one keeps the name and team they have rather than being renamed to an id."""
    by_user = select(Customer).where(Customer.slack_user_id == user_id)
    customer = session.scalar(by_user)
    if customer is None and email:
        customer = session.scalar(_by_email(), {"email": email.lower()})
        if customer is not None:
            customer.slack_user_id = user_id
    if customer is None:
        fresh = Customer(slack_user_id=user_id, name=name, email=email.lower() if email else None)
        customer = _insert_or_get(session, fresh, lambda: session.scalar(by_user))
    elif not known:
        return customer
    customer.slack_team_id = team_id
    if name:
        customer.name = name
    organization: Organization | None = None
    if team_id and team_id != home_team_id:
        # Asked on every message, not only a new customer's: what Slack shows of them (their mail
        # domain) may join their team's organization to the one the desk knows from email.
        domain = _mail_domain(email.rpartition("@")[2]) if email else None
        organization = organization_for_team(session, team_id, team_name, domain=domain)
    elif customer.organization_id is None and email:
        organization = organization_for_domain(session, email.rpartition("@")[2])
    if customer.organization_id is None and organization is not None:
        customer.organization_id = organization.id
    session.flush()
    return customer


def profile_lane(user_id: str) -> str:
    return f"profile:{user_id}"


def look_up_slack_customer_later(
    session: Session, user_id: str, home_team_id: str | None, *, due_at: datetime
) -> None:
    """A Slack customer stored under their id while Slack could not say who they are: the worker
    asks again (`Kind.PROFILE`), so their record and cards get their name even if they never
    write again. One waiting row per person covers all their messages meanwhile."""
    waiting = session.scalar(
        select(Outbox.id).where(
            Outbox.lane == profile_lane(user_id),
            Outbox.state == OutboxState.PENDING,
        )
    )
    if waiting is None:
        outbox.enqueue(
            session,
            Kind.PROFILE,
            lane=profile_lane(user_id),
            payload={"user": user_id, "home_team": home_team_id},
            due_at=due_at,
        )


def name_slack_customer(
    session: Session,
    user_id: str,
    *,
    name: str,
    team_id: str | None,
    email: str | None,
    home_team_id: str | None,
    team_name: str | None,
) -> int:
    """Slack said who a customer stored under their id is: their record takes it, and the cards of
    their tickets are drawn again. Returns how many cards; 0 when there is no such customer."""
    if session.scalar(select(Customer.id).where(Customer.slack_user_id == user_id)) is None:
        return 0
    customer = customer_for_slack_user(
        session,
        user_id,
        name=name,
        team_id=team_id,
        email=email,
        home_team_id=home_team_id,
        team_name=team_name,
    )
    tickets = session.scalars(
        select(Ticket).where(Ticket.requester_id == customer.id).order_by(Ticket.id.desc()).limit(50)
    ).all()
    for ticket in tickets:
        update_card(session, ticket)
    return len(tickets)
