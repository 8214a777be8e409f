"""What triage added to the store's actions: a thread line when staff add a participant, the
merge's cross-link, and email participants of a Slack ticket hearing its replies and notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from store import actions
from store.actions import Actor, DeskPolicy
from store.db import InvalidRequest
from store.models import MAX_LINK_URL_CHARS, Origin, Outbox

POLICY = DeskPolicy(
    mail_domain="example.com", triage_channel="C0TRIAGE", support_addresses=frozenset({"support@example.com"})
)
ALICE = Actor("alice", slack_id="U0ALICE")


def rows(db, kind):
    with db.transaction() as s:
        return list(s.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id)))


def email_ticket(s, email="dan@globex.example"):
    customer = actions.customer_for_email(s, email)
    return actions.open_ticket(
        s, POLICY, subject="Printer", requester=customer, origin=Origin.EMAIL, actor=Actor(email, email=email)
    )


def slack_ticket(s):
    customer = actions.customer_for_slack_user(s, "U0EXTERIN", name="Erin", team_id="T0EXT")
    return actions.open_ticket(
        s,
        POLICY,
        subject="Slack",
        requester=customer,
        origin=Origin.SLACK,
        actor=Actor("Erin"),
        origin_channel="C0CONNECT",
        origin_thread_ts="1.1",
    )


def test_staff_adding_a_participant_leaves_a_thread_line_and_customers_do_not(db):
    with db.transaction() as s:
        ticket = email_ticket(s)
        actions.add_participant(s, POLICY, ticket, "erin@globex.example", ALICE)
        actions.add_participant(
            s, POLICY, ticket, "frank@globex.example", Actor("Dan", email="dan@globex.example")
        )
    assert [row.payload["text"] for row in rows(db, "slack.thread_line")] == [
        "alice added erin@globex.example to the ticket"
    ]


def test_merge_links_the_duplicate_to_its_target(db):
    with db.transaction() as s:
        target, source = email_ticket(s), email_ticket(s, "erin@globex.example")
        actions.link(s, source, ALICE, target=target, kind="relates")
        actions.merge(s, POLICY, source, target, ALICE)
        assert [(kind, number) for kind, number, _ in actions.links_of(s, target) if number] == [
            ("duplicated_by", source.number)
        ]


def test_merge_turns_a_link_from_the_target_into_the_duplicate_link(db):
    # The merged ticket is closed and lives on in the target: "blocks" no longer says anything.
    with db.transaction() as s:
        target, source = email_ticket(s), email_ticket(s, "erin@globex.example")
        actions.link(s, target, ALICE, target=source, kind="blocks")
        actions.merge(s, POLICY, source, target, ALICE)
    with db.transaction() as s:
        assert [(kind, number) for kind, number, _ in actions.links_of(s, target) if number] == [
            ("duplicated_by", source.number)
        ]


def test_a_link_longer_than_its_column_is_refused_and_one_that_fits_is_kept(db):
    fits = "https://tracker.example/issues/9?" + "q" * (MAX_LINK_URL_CHARS - 33)
    with db.transaction() as s:
        ticket = email_ticket(s)
        with pytest.raises(InvalidRequest, match="longer than 2,000 characters"):
            actions.link(s, ticket, ALICE, url=fits + "q")
        assert actions.link(s, ticket, ALICE, url=fits)
    with db.transaction() as s:
        assert [url for _, _, url in actions.links_of(s, ticket)] == [fits]


def test_a_slack_ticket_with_email_participants_reaches_both(db):
    with db.transaction() as s:
        ticket = slack_ticket(s)
        actions.add_participant(s, POLICY, ticket, "dan@globex.example", ALICE, notify=False)
        actions.add_staff_reply(
            s, POLICY, ticket, author=ALICE, body_markdown="hi", slack_channel="C0TRIAGE", slack_ts="2.1"
        )
        actions.set_status(s, POLICY, ticket, "resolved", ALICE)
    assert len(rows(db, "slack.origin_post")) == 1
    assert [row.payload["template"] for row in rows(db, "slack.origin_line")] == ["resolved"]
    assert [(row.payload["template"], row.payload["to"]) for row in rows(db, "email.send")] == [
        ("staff_reply", "dan@globex.example"),
        ("resolved", "dan@globex.example"),
    ]


def test_a_plain_slack_ticket_gets_no_email(db):
    with db.transaction() as s:
        ticket = slack_ticket(s)
        reply = actions.add_staff_reply(
            s, POLICY, ticket, author=ALICE, body_markdown="hi", slack_channel="C0TRIAGE", slack_ts="2.1"
        )
        assert reply.delivery == "pending"
        actions.set_status(s, POLICY, ticket, "closed", ALICE)
    assert rows(db, "email.send") == []
    assert len(rows(db, "slack.origin_post")) == 1


def test_a_customer_chosen_name_in_a_thread_line_cannot_notify_the_channel_or_hide_a_link(db):
    name = "<!channel> <https://evil.example|Support> & co"
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "mallory@evil.example", name)
        ticket = actions.open_ticket(
            s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE
        )
        actions.set_status(s, POLICY, ticket, "resolved", ALICE)
        actions.add_customer_message(
            s, POLICY, ticket, customer=customer, body_markdown="again", source="email"
        )
        actions.record_bounce(s, ticket, "mallory@evil.example", "550 <!here> see <https://evil.example>")
    assert [row.payload["text"] for row in rows(db, "slack.thread_line")][-2:] == [
        "&lt;!channel&gt; &lt;https://evil.example|Support&gt; &amp; co reopened the ticket",
        "Mail to mallory@evil.example bounced: 550 &lt;!here&gt; see &lt;https://evil.example&gt;",
    ]


def test_a_new_owner_is_mentioned_and_one_who_took_the_ticket_is_named(db):
    with db.transaction() as s:
        ticket = email_ticket(s)
        actions.assign(s, ticket, "U0NOBODY", ALICE)
        # Mentioned (so Slack tells them), whatever their name is.
        actions.assign(s, ticket, "U0BOB", ALICE, assignee_name="<b>Bob</b>")
        actions.assign(s, ticket, "U0ALICE", ALICE, assignee_name="<b>alice</b>")
    assert [row.payload["text"] for row in rows(db, "slack.thread_line")] == [
        "alice assigned the ticket to <@U0NOBODY>",
        "alice assigned the ticket to <@U0BOB>",
        "alice assigned the ticket to &lt;b&gt;alice&lt;/b&gt;",
    ]


def test_a_reopened_ticket_keeps_the_times_of_its_last_resolution_only(db):
    start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    with freeze_time(start), db.transaction() as s:
        ticket = email_ticket(s)
        actions.set_status(s, POLICY, ticket, "resolved", ALICE)
    with freeze_time(start + timedelta(hours=1)), db.transaction() as s:
        ticket = actions.ticket_by_number(s, 1)
        actions.set_status(s, POLICY, ticket, "open", ALICE)
        assert (ticket.resolved_at, ticket.closed_at) == (None, None)
    with freeze_time(start + timedelta(hours=2)), db.transaction() as s:
        ticket = actions.ticket_by_number(s, 1)
        actions.set_status(s, POLICY, ticket, "closed", ALICE)
        assert ticket.resolved_at == ticket.closed_at == start + timedelta(hours=2)
