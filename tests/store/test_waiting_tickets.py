""" "Waiting longest for a reply" (the App Home tab) from the store, with frozen
clocks: a customer waits from their first message nobody has answered, not from their latest."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time

from store import actions, queries
from tests.store.test_queries import ALICE, POLICY, START, new_ticket


def test_a_customer_who_writes_again_has_waited_since_their_first_unanswered_message(db):
    with freeze_time(START):
        number = new_ticket(db, "a@acme.example", "Printer", body="It is on fire.")
    with freeze_time(START + timedelta(hours=3)), db.transaction() as s:
        ticket = actions.ticket_by_number(s, number)
        actions.add_customer_message(
            s, POLICY, ticket, customer=ticket.requester, body_markdown="Hello? Anyone?", source="email"
        )
    with freeze_time(START + timedelta(hours=4)), db.transaction() as s:
        [(waiting, since)] = queries.waiting_tickets(s)
    assert waiting.number == number
    assert since == START  # three hours longer than the latest message says


def test_the_waiting_count_is_every_ticket_waiting_not_only_those_shown(db):
    """The Home tab shows the ten longest waiting; with twelve waiting it must say so ("…and 2
    more"), as its other sections do, or the team takes ten for the whole backlog."""
    with freeze_time(START):
        numbers = [new_ticket(db, f"c{n}@acme.example", f"Ticket {n}", body="Help") for n in range(13)]
    with freeze_time(START + timedelta(hours=1)), db.transaction() as s:
        actions.set_status(s, POLICY, actions.ticket_by_number(s, numbers[0]), "pending", ALICE)
        shown = queries.waiting_tickets(s, limit=10)
        total = queries.waiting_count(s)
    assert len(shown) == 10 and total == 12
