"""Read-only queries on a real database: lists, search, customers, repeat requesters, home, stats."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy.orm import Session

from store import actions, queries
from store.actions import Actor, DeskPolicy
from store.db import Database
from store.models import Origin, SlackUser, Ticket

POLICY = DeskPolicy(
    mail_domain="example.com",
    triage_channel="C0TRIAGE",
    support_addresses=frozenset({"support@example.com"}),
)
ALICE = Actor("alice", slack_id="U0ALICE")
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def new_ticket(db: Database, email: str, subject: str, body: str = "") -> int:
    with db.transaction() as s:
        customer = actions.customer_for_email(s, email)
        ticket = actions.open_ticket(
            s,
            POLICY,
            subject=subject,
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor(email, email=email),
        )
        if body:
            actions.add_customer_message(
                s, POLICY, ticket, customer=customer, body_markdown=body, source="email"
            )
        return ticket.number


def numbers(tickets: list[Ticket]) -> list[int]:
    return [t.number for t in tickets]


def test_list_filters_by_status_assignee_and_label(db):
    one = new_ticket(db, "a@acme.example", "Printer")
    two = new_ticket(db, "b@acme.example", "Laptop")
    three = new_ticket(db, "c@acme.example", "Phone")
    with db.transaction() as s:
        actions.create_label(s, "hardware")
        actions.assign(s, actions.ticket_by_number(s, one), "U0ALICE", ALICE)
        actions.change_labels(s, actions.ticket_by_number(s, two), ["hardware"], [], ALICE)
        actions.set_status(s, POLICY, actions.ticket_by_number(s, three), "closed", ALICE)
    with db.transaction() as s:
        active = queries.list_tickets(s, queries.TicketFilter())
        assert sorted(numbers(active.items)) == [one, two] and active.total == 2
        assert numbers(queries.list_tickets(s, queries.TicketFilter(assignee_slack_id="U0ALICE")).items) == [
            one
        ]
        assert numbers(queries.list_tickets(s, queries.TicketFilter(unassigned=True)).items) == [two]
        assert numbers(queries.list_tickets(s, queries.TicketFilter(label="Hardware")).items) == [two]
        closed = queries.list_tickets(s, queries.TicketFilter(statuses=("closed",)))
        assert numbers(closed.items) == [three]
        assert queries.list_tickets(s, queries.TicketFilter(statuses=())).total == 3


def test_list_pages_report_the_total(db):
    for i in range(5):
        new_ticket(db, "a@acme.example", f"t{i}")
    with db.transaction() as s:
        page = queries.list_tickets(s, queries.TicketFilter(), limit=2, offset=4)
        assert page.total == 5 and len(page.items) == 1 and page.offset == 4


def test_search_matches_every_word_in_subject_or_body_any_case(db):
    printer = new_ticket(db, "a@acme.example", "Printer on fire", body="The TONER smells")
    new_ticket(db, "b@acme.example", "Laptop", body="battery")
    percent = new_ticket(db, "c@acme.example", "Disk 100% full")
    with db.transaction() as s:
        assert numbers(queries.search_tickets(s, ["printer"]).items) == [printer]
        assert numbers(queries.search_tickets(s, ["fire", "toner"]).items) == [printer]
        assert queries.search_tickets(s, ["fire", "battery"]).total == 0
        # A phrase: its words together and in that order.
        assert numbers(queries.search_tickets(s, ["on fire"]).items) == [printer]
        assert queries.search_tickets(s, ["fire on"]).total == 0
        # LIKE wildcards in the text are literal characters.
        assert numbers(queries.search_tickets(s, ["100%"]).items) == [percent]
        assert queries.search_tickets(s, ["%"]).total == 1
        assert queries.search_tickets(s, ["   "]).total == 0
    # Any case in any script, on SQLite too (whose own lower() knows only A-Z).
    umlaut = new_ticket(db, "d@acme.example", "STÖRUNG IM BÜRO", body="Ärger mit ΣΥΣΤΗΜΑ")
    with db.transaction() as s:
        for term in ("störung", "büro", "ärger", "ÄRGER", "συστημα"):
            assert numbers(queries.search_tickets(s, [term]).items) == [umlaut], term


def test_customer_history_and_organization(db):
    first = new_ticket(db, "dan@globex.example", "One")
    second = new_ticket(db, "dan@globex.example", "Two")
    new_ticket(db, "erin@globex.example", "Other")
    with db.transaction() as s:
        dan = queries.customer_by_email(s, "DAN@globex.example")
        assert dan is not None and dan.organization is not None
        assert numbers(queries.customer_tickets(s, dan).items) == [second, first]
        assert queries.organization_size(s, dan.organization.id) == 2
        assert queries.customer_by_email(s, "nobody@globex.example") is None


def test_repeat_requests_count_the_thirty_days_before_each_ticket(db):
    with freeze_time(START):
        first = new_ticket(db, "dan@globex.example", "One")
    with freeze_time(START + timedelta(days=20)):
        second = new_ticket(db, "dan@globex.example", "Two")
    with freeze_time(START + timedelta(days=40)):
        third = new_ticket(db, "dan@globex.example", "Three")
        duplicate = new_ticket(db, "dan@globex.example", "Three again")
    with db.transaction() as s:
        actions.merge(
            s, POLICY, actions.ticket_by_number(s, duplicate), actions.ticket_by_number(s, third), ALICE
        )
    with db.transaction() as s:
        counts = [queries.repeat_requests(s, actions.ticket_by_number(s, n)) for n in (first, second, third)]
        # The 40-day ticket sees only the 20-day one; the merged duplicate is not a new request.
        assert counts == [1, 2, 2]


def test_home_lists(db):
    with freeze_time(START):
        waiting_long = new_ticket(db, "a@acme.example", "Old", body="help")
    with freeze_time(START + timedelta(hours=1)):
        answered = new_ticket(db, "b@acme.example", "Answered", body="help")
        mine = new_ticket(db, "c@acme.example", "Mine")
    with freeze_time(START + timedelta(hours=2)), db.transaction() as s:
        ticket = actions.ticket_by_number(s, answered)
        actions.add_staff_reply(
            s, POLICY, ticket, author=ALICE, body_markdown="on it", slack_channel="C0TRIAGE", slack_ts="1.1"
        )
        actions.assign(s, actions.ticket_by_number(s, mine), "U0ALICE", ALICE)
    with freeze_time(START + timedelta(hours=3)), db.transaction() as s:
        actions.set_priority(s, actions.ticket_by_number(s, waiting_long), "urgent", ALICE)
    with db.transaction() as s:
        assert numbers(queries.my_open_tickets(s, "U0ALICE")) == [mine]
        # Urgent first, then oldest.
        assert numbers(queries.unassigned_tickets(s)) == [waiting_long, answered]
        waiting = queries.waiting_tickets(s)
        assert [(t.number, since) for t, since in waiting] == [(waiting_long, START)]
        assert numbers(queries.recently_changed(s, limit=2)) == [waiting_long, mine]


def reply_reaches_the_customer(session: Session, number: int, slack_ts: str) -> None:
    """A staff reply written now, and its delivery done now (what the worker settles)."""
    reply = actions.add_staff_reply(
        session,
        POLICY,
        actions.ticket_by_number(session, number),
        author=ALICE,
        body_markdown="hi",
        slack_channel="C0TRIAGE",
        slack_ts=slack_ts,
    )
    session.flush()
    actions.settle_delivery(session, reply.id, reached=True)


def test_stats_from_the_event_trail(db):
    with freeze_time(START):
        one = new_ticket(db, "a@acme.example", "One")
        two = new_ticket(db, "a@acme.example", "Two")
        new_ticket(db, "b@acme.example", "Three")
        with db.transaction() as s:
            actions.create_label(s, "bug")
            actions.change_labels(s, actions.ticket_by_number(s, one), ["bug"], [], ALICE)
    with freeze_time(START + timedelta(hours=1)), db.transaction() as s:
        reply_reaches_the_customer(s, one, "1.1")
    with freeze_time(START + timedelta(hours=2)), db.transaction() as s:
        reply_reaches_the_customer(s, one, "1.2")  # not a first response any more
        # Written, then deleted inside its undo window: it answered no one.
        withdrawn = actions.add_staff_reply(
            s,
            POLICY,
            actions.ticket_by_number(s, two),
            author=ALICE,
            body_markdown="hi",
            slack_channel="C0TRIAGE",
            slack_ts="1.3",
        )
        assert actions.delete_slack_message(s, actions.ticket_by_number(s, two), withdrawn) == "cancelled"
    with freeze_time(START + timedelta(hours=3)), db.transaction() as s:
        reply_reaches_the_customer(s, two, "1.4")
        actions.set_status(s, POLICY, actions.ticket_by_number(s, one), "resolved", ALICE)
    with freeze_time(START + timedelta(hours=4)), db.transaction() as s:
        actions.set_status(s, POLICY, actions.ticket_by_number(s, one), "open", ALICE)
    with freeze_time(START + timedelta(days=1)), db.transaction() as s:
        stats = queries.desk_stats(s, START - timedelta(days=7))
    assert stats.created == 3 and stats.created_by_origin == {"email": 3}
    assert stats.created_by_label == {"bug": 1}
    assert stats.responded == 2 and stats.first_response_median == timedelta(hours=2)
    assert stats.resolved == 1 and stats.resolution_median == timedelta(hours=3)
    assert stats.reopened == 1 and stats.reopen_rate == 1.0 and stats.repeat_requesters == 1
    assert stats.open_now == 3 and stats.unassigned_now == 3
    with db.transaction() as s:
        empty = queries.desk_stats(s, START + timedelta(days=2), START + timedelta(days=3))
    assert empty.created == 0 and empty.first_response_median is None


def test_staff_lookup_by_id_and_name(db):
    with db.transaction() as s:
        s.add(SlackUser(user_id="U0ALICE", name="alice", display_name="Alice A", is_staff=True))
        s.add(SlackUser(user_id="U0ROBOT", name="robot", is_bot=True, is_staff=True))
        s.add(SlackUser(user_id="U0DAN", name="dan"))
    with db.transaction() as s:
        assert queries.is_staff(s, "U0ALICE")
        assert not queries.is_staff(s, "U0ROBOT") and not queries.is_staff(s, "U0DAN")
        assert not queries.is_staff(s, "U0NOBODY")
        found = queries.slack_user_by_name(s, "@Alice A")
        assert found is not None and found.user_id == "U0ALICE"
        assert queries.slack_user_by_name(s, "robot") is None
        assert queries.display_name(queries.slack_user(s, "U0DAN"), "x") == "dan"
        assert queries.display_name(None, "fallback") == "fallback"


def test_label_usage_counts_open_tickets(db):
    one = new_ticket(db, "a@acme.example", "One")
    two = new_ticket(db, "b@acme.example", "Two")
    with db.transaction() as s:
        actions.create_label(s, "bug")
        actions.create_label(s, "idea")
        for number in (one, two):
            actions.change_labels(s, actions.ticket_by_number(s, number), ["bug"], [], ALICE)
        actions.set_status(s, POLICY, actions.ticket_by_number(s, two), "closed", ALICE)
    with db.transaction() as s:
        assert [(label.name, count) for label, count in queries.label_usage(s)] == [("bug", 1), ("idea", 0)]


def test_a_desk_new_tickets_first_response_is_timed_from_when_the_customer_wrote(db):
    """`/desk new` on Monday: staff's opening email asks Dan a question; Dan answers on Wednesday,
    and is answered ten minutes later. The desk answered him in ten minutes, not in two days: its
    opening answered nothing (it is no first response), so it is no start of one either. An email
    ticket opened the same day is still timed from its creation."""
    with freeze_time(START), db.transaction() as s:
        dan = actions.customer_for_email(s, "dan@globex.example")
        ticket = actions.open_ticket(
            s, POLICY, subject="Printer", requester=dan, origin=Origin.STAFF, actor=ALICE
        )
        staff_opened = ticket.number
    with freeze_time(START + timedelta(minutes=1)), db.transaction() as s:
        reply_reaches_the_customer(s, staff_opened, "1.1")  # the opening email
        assert actions.ticket_by_number(s, staff_opened).first_response_at is None
    with freeze_time(START + timedelta(days=2)), db.transaction() as s:
        ticket = actions.ticket_by_number(s, staff_opened)
        actions.add_customer_message(
            s, POLICY, ticket, customer=dan, body_markdown="A LaserJet", source="email"
        )
    with freeze_time(START + timedelta(days=2)):
        mailed = new_ticket(db, "erin@acme.example", "Export")
    with freeze_time(START + timedelta(days=2, minutes=10)), db.transaction() as s:
        reply_reaches_the_customer(s, staff_opened, "1.2")
    with freeze_time(START + timedelta(days=2, minutes=30)), db.transaction() as s:
        reply_reaches_the_customer(s, mailed, "1.3")
    with freeze_time(START + timedelta(days=3)), db.transaction() as s:
        stats = queries.desk_stats(s, START)
    # The median of 10 and 30 minutes.
    assert stats.responded == 2 and stats.first_response_median == timedelta(minutes=20)


def test_a_request_merged_into_a_later_ticket_keeps_its_answer_and_its_start(db):
    """Dan mails on Monday (#1) and is answered an hour later; on Tuesday he mails again (#2) and
    staff merge #1 into #2, the newer one, which they resolve on Wednesday. It is one request: opened
    on Monday, answered in an hour, resolved in two days. The stats counted #2 alone: opened on
    Tuesday, never answered, resolved in a day."""
    with freeze_time(START):
        first = new_ticket(db, "dan@globex.example", "Printer", "It is on fire")
    with freeze_time(START + timedelta(hours=1)), db.transaction() as s:
        reply_reaches_the_customer(s, first, "1.1")
    with freeze_time(START + timedelta(days=1)):
        second = new_ticket(db, "dan@globex.example", "Printer again", "Still on fire")
    with freeze_time(START + timedelta(days=1, minutes=5)), db.transaction() as s:
        actions.merge(
            s, POLICY, actions.ticket_by_number(s, first), actions.ticket_by_number(s, second), ALICE
        )
    with freeze_time(START + timedelta(days=2)), db.transaction() as s:
        actions.set_status(s, POLICY, actions.ticket_by_number(s, second), "resolved", ALICE)
    with freeze_time(START + timedelta(days=3)), db.transaction() as s:
        stats = queries.desk_stats(s, START)
    assert stats.created == 1 and stats.repeat_requesters == 0
    assert stats.responded == 1 and stats.first_response_median == timedelta(hours=1)
    assert stats.resolved == 1 and stats.resolution_median == timedelta(days=2)


def test_stats_over_more_tickets_than_a_statement_takes_parameters(db):
    """A busy desk's `/desk stats 366d`: 40 000 tickets opened in the year. Each ticket id was a
    parameter of the statements reading the trail, and SQLite takes 32 766 parameters a statement,
    PostgreSQL 65 535: the command failed. Here SQLite's limit is lowered to 50 for 60 tickets."""
    with freeze_time(START):
        for n in range(60):
            new_ticket(db, f"customer{n % 30}@acme.example", f"Ticket {n}", "Help")
    with freeze_time(START + timedelta(hours=1)), db.transaction() as s:
        reply_reaches_the_customer(s, 1, "1.1")
        actions.merge(s, POLICY, actions.ticket_by_number(s, 2), actions.ticket_by_number(s, 3), ALICE)
        # #4's answer goes with it into #5, and with #5 into #6: #6's request was answered.
        reply_reaches_the_customer(s, 4, "1.4")
        actions.merge(s, POLICY, actions.ticket_by_number(s, 4), actions.ticket_by_number(s, 5), ALICE)
        actions.merge(s, POLICY, actions.ticket_by_number(s, 5), actions.ticket_by_number(s, 6), ALICE)
    with freeze_time(START + timedelta(days=1)), db.read() as s:
        raw = s.connection().connection.driver_connection
        if isinstance(raw, sqlite3.Connection):
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)
        try:
            stats = queries.desk_stats(s, START)
        finally:
            if isinstance(raw, sqlite3.Connection):
                raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)
    assert stats.created == 57 and stats.responded == 2 and stats.repeat_requesters == 27
    assert stats.first_response_median == timedelta(hours=1) and stats.open_now == 57
