"""One waiting card row covers every change made before it runs, and none is lost to a claim that
runs while a change is being committed (PostgreSQL, where a claim and a change can interleave)."""

from __future__ import annotations

import threading

import pytest

from store import actions, outbox
from store.db import Database
from store.models import Status, Ticket
from store.outbox import Kind
from tests.conftest import POSTGRES_URL
from tests.store.test_triage_actions import ALICE, POLICY, email_ticket


def claim_card_rows(db: Database) -> list[outbox.OutboxItem]:
    return outbox.claim_due(db, "w-test", kinds=frozenset({Kind.CARD.value}))


def test_changes_before_a_card_row_runs_share_it(db: Database) -> None:
    with db.transaction() as s:
        ticket_id = email_ticket(s).id
    (first,) = claim_card_rows(db)  # the card's first post, claimed
    with db.transaction() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_priority(s, ticket, "urgent", ALICE)  # a row while the first is in flight
        actions.set_status(s, POLICY, ticket, Status.PENDING, ALICE)  # covered by that row
    with db.transaction() as s:
        assert outbox.mark_done(s, first.id, "w-test")
    (update,) = claim_card_rows(db)
    assert update.kind == Kind.CARD.value and update.id != first.id


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_a_claim_waits_for_a_change_that_found_the_row_waiting(db: Database) -> None:
    with db.transaction() as s:
        ticket_id = email_ticket(s).id
    (first,) = claim_card_rows(db)
    with db.transaction() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_priority(s, ticket, "urgent", ALICE)
    with db.transaction() as s:
        assert outbox.mark_done(s, first.id, "w-test")
    # A change finds the update row waiting and relies on it: until it commits, no claim may take
    # the row and read the ticket without the change.
    with db.transaction() as change:
        ticket = change.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_status(change, POLICY, ticket, Status.PENDING, ALICE)
        assert claim_card_rows(db) == []
    (update,) = claim_card_rows(db)
    with db.read() as s:
        ticket = s.get(Ticket, update.ticket_id)
        assert ticket is not None and ticket.status == Status.PENDING


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_a_change_never_waits_for_a_card_row_another_change_holds(db: Database) -> None:
    """Two changes that each update two cards (a link between two tickets, from either side) must
    not wait for each other's rows: the second enqueues a row of its own instead of waiting."""
    with db.transaction() as s:
        ticket_id = email_ticket(s).id
    (first,) = claim_card_rows(db)
    with db.transaction() as s:
        assert outbox.mark_done(s, first.id, "w-test")
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_priority(s, ticket, "urgent", ALICE)  # the waiting update row
    finished = threading.Event()

    def second_change() -> None:
        with db.transaction() as s:
            outbox.enqueue_once(s, Kind.CARD, ticket_id=ticket_id, lane=outbox.triage_lane(ticket_id))
        finished.set()

    with db.transaction() as holder:
        outbox.enqueue_once(holder, Kind.CARD, ticket_id=ticket_id, lane=outbox.triage_lane(ticket_id))
        other = threading.Thread(target=second_change)
        other.start()
        waited = finished.wait(10)
    other.join(10)
    assert waited
    assert len(claim_card_rows(db)) == 1  # one lane: the second row waits behind the first
