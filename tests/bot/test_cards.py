"""The card as plain data, read from a real store: everything a card shows comes from its reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from bot.cards import card_view
from store import actions
from store.db import Database
from tests.store.test_triage_actions import ALICE, email_ticket, slack_ticket

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_the_card_shows_requester_labels_links_and_repeat_requests(db: Database) -> None:
    with freeze_time(START), db.transaction() as s:
        earlier = email_ticket(s, "dan@globex.example")
    with freeze_time(START + timedelta(days=3)), db.transaction() as s:
        ticket = email_ticket(s, "dan@globex.example")
        blocked = email_ticket(s, "erin@initech.example")
        for name in ("urgent-customer", "billing", "bug"):
            actions.create_label(s, name)
        actions.change_labels(s, ticket, ["bug", "billing"], [], ALICE)
        actions.link(s, ticket, ALICE, target=blocked, kind="blocks")
        actions.link(s, earlier, ALICE, target=ticket, kind="duplicates")
        actions.link(s, ticket, ALICE, url="https://github.com/acme/app/issues/9", kind="relates")
        numbers = earlier.number, ticket.number, blocked.number
    with db.read() as s:
        view = card_view(s, actions.ticket_by_number(s, numbers[1]))
    assert (view.number, view.requester_name) == (numbers[1], "dan")
    assert view.requester_contact == "dan@globex.example"
    assert (view.organization, view.origin_label) == ("globex.example", "Email")
    assert view.labels == ("billing", "bug")
    assert view.available_labels == ("billing", "bug", "urgent-customer")
    assert [(link.kind, link.target_number, link.url) for link in view.links] == [
        ("blocks", numbers[2], None),
        ("duplicated_by", numbers[0], None),
        ("relates", None, "https://github.com/acme/app/issues/9"),
    ]
    assert view.repeat_requests_30d == 2 and view.merged_into is None


def test_a_slack_connect_card_names_the_team_and_a_merged_card_its_target(db: Database) -> None:
    with db.transaction() as s:
        target = email_ticket(s, "dan@globex.example")
        source = slack_ticket(s)
        actions.merge(s, actions.DeskPolicy("example.com", "C0TRIAGE", frozenset()), source, target, ALICE)
        numbers = source.number, target.number
    with db.read() as s:
        merged = card_view(s, actions.ticket_by_number(s, numbers[0]))
        unlabelled = card_view(s, actions.ticket_by_number(s, numbers[1]))
    assert merged.requester_name == "Erin" and merged.requester_contact is None
    assert merged.origin_label == "Slack Connect (T0EXT)"
    assert merged.merged_into == numbers[1]
    assert (unlabelled.labels, unlabelled.available_labels, unlabelled.merged_into) == ((), (), None)
