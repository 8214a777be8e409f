"""Verbs that change a ticket: each is one transaction that writes the event, the thread line, the
card update and (for resolved, closed, reopened, merged) the customer's notice."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select

from store import actions
from store.actions import Actor
from store.models import EmailId, Message, Participant, Ticket, TicketEvent, TicketLink, utcnow
from tests.bot.test_commands_support import (
    BOB,
    counts,
    desk_cmd,
    email_ticket,
    emails,
    make_desk,
    outbox_rows,
    slack_ticket,
    thread_cmd,
    thread_lines,
)
from tests.conftest import POSTGRES_URL, lock_waits
from tests.e2e.conftest import wait_until


@pytest.fixture
def desk(db, tmp_path):
    return make_desk(db, tmp_path)


def ticket(desk, number: int) -> Ticket:
    with desk.db.transaction() as s:
        found = actions.ticket_by_number(s, number)
        _ = found.labels
        return found


def card_updates(desk) -> int:
    return len(outbox_rows(desk, "slack.card"))


def test_close_tells_the_customer_once_by_email_and_updates_card_and_thread(desk):
    email_ticket(desk)
    cards = card_updates(desk)
    reply = desk_cmd(desk, "close 1")
    assert reply.ok and reply.text == "#1 is now closed. The customer is told."
    assert ticket(desk, 1).status == "closed"
    assert [mail["template"] for mail in emails(desk)] == ["closed"]
    assert thread_lines(desk) == ["Alice set status to closed"]
    # One waiting card row covers any number of changes before it runs.
    assert card_updates(desk) == cards
    assert desk_cmd(desk, "close 1").text == "#1 is already closed: nothing changed."
    assert len(emails(desk)) == 1


def test_resolve_and_reopen_tell_a_slack_customer_in_their_thread(desk):
    slack_ticket(desk)
    assert desk_cmd(desk, "status 1 resolved").text == "#1 is now resolved. The customer is told."
    assert desk_cmd(desk, "reopen 1").text == "Reopened #1. The customer is told."
    notices = [row.payload["template"] for row in outbox_rows(desk, "slack.origin_line")]
    assert notices == ["resolved", "reopened"]
    assert emails(desk) == []
    assert thread_lines(desk)[-2:] == ["Alice set status to resolved", "Alice reopened the ticket"]
    assert desk_cmd(desk, "reopen 1").text == "#1 is open, not resolved or closed: nothing to reopen."


def test_pending_is_not_announced(desk):
    email_ticket(desk)
    assert desk_cmd(desk, "status 1 PENDING").text == "#1 is now pending."
    assert emails(desk) == []


def test_priority(desk):
    email_ticket(desk)
    assert desk_cmd(desk, "priority 1 urgent").text == "#1 now has urgent priority."
    assert thread_cmd(desk, 1, "priority urgent").text == "#1 already has urgent priority: nothing changed."
    assert ticket(desk, 1).priority == "urgent"
    assert thread_lines(desk) == ["Alice set priority to urgent"]


def test_assign_by_mention_handle_and_me_then_unassign(desk):
    email_ticket(desk)
    assert desk_cmd(desk, "assign 1 <@U0BOB|bob>").text == "Assigned #1 to <@U0BOB>."
    assert ticket(desk, 1).assignee_slack_id == BOB
    assert desk_cmd(desk, "assign 1 @bob").text == "#1 is already assigned to <@U0BOB>: nothing changed."
    assert thread_cmd(desk, 1, "assign me").text == "Assigned #1 to <@U0ALICE>."
    assert desk_cmd(desk, "unassign 1").text == "#1 is unassigned."
    assert desk_cmd(desk, "unassign 1").text == "#1 has no assignee: nothing changed."
    assert thread_lines(desk) == [
        "Alice assigned the ticket to <@U0BOB>",
        "Alice assigned the ticket to Alice",
        "Alice unassigned the ticket",
    ]
    with desk.db.transaction() as s:
        kinds = list(s.scalars(select(TicketEvent.kind).where(TicketEvent.kind == "assigned")))
    assert len(kinds) == 3


def test_a_new_owner_is_mentioned_whether_or_not_their_name_is_known(desk):
    email_ticket(desk)
    assert desk_cmd(desk, "assign 1 <@U0NEW|newbie>").ok
    # The line mentions them, which Slack shows as their name (and tells them of).
    assert thread_cmd(desk, 1, "assign <@U0NOBODY>").ok
    assert thread_lines(desk) == [
        "Alice assigned the ticket to <@U0NEW>",
        "Alice assigned the ticket to <@U0NOBODY>",
    ]


def test_a_customer_from_a_slack_connect_channel_cannot_own_a_ticket(desk):
    slack_ticket(desk)  # Erin (U0EXTERIN) wrote in from a Slack Connect channel
    before = counts(desk)
    reply = desk_cmd(desk, "assign 1 <@U0EXTERIN|erin>")
    assert not reply.ok and reply.text == "A customer cannot own a ticket."
    assert ticket(desk, 1).assignee_slack_id is None and counts(desk) == before


def test_a_colleague_who_filed_a_request_of_their_own_can_still_own_tickets(desk):
    with desk.db.transaction() as s:  # Bob asked in #it-help once: a customer of our own workspace
        actions.customer_for_slack_user(s, BOB, name="Bob", team_id="T0HOME", home_team_id="T0HOME")
    email_ticket(desk)
    assert desk_cmd(desk, "assign 1 <@U0BOB|bob>").ok
    assert ticket(desk, 1).assignee_slack_id == BOB


def test_labels_add_remove_and_list(desk):
    email_ticket(desk)
    assert desk_cmd(desk, "label-create bug #ff0000").text.startswith("Created the label bug (#ff0000):")
    assert desk_cmd(desk, "label-create Question").ok
    assert not desk_cmd(desk, "label-create bug").ok
    assert desk_cmd(desk, "labels").text == "*Labels*\n• bug (#ff0000) — 0 open\n• question — 0 open"
    assert thread_cmd(desk, 1, "label +bug question").text == "#1's labels: bug, question."
    assert desk_cmd(desk, "label 1 -question,+bug").text == "#1's labels: bug."
    assert desk_cmd(desk, "label 1 +bug").text == "#1's labels are already like that: nothing changed."
    assert [label.name for label in ticket(desk, 1).labels] == ["bug"]
    assert thread_lines(desk) == ["Alice changed labels: +bug +question", "Alice changed labels: -question"]
    assert "bug (#ff0000) — 1 open" in desk_cmd(desk, "labels").text


def test_a_label_created_with_a_second_word_says_it_took_it_as_the_color(desk):
    # A two-word name is not silently cut: the answer shows what was made of the second word.
    assert desk_cmd(desk, "label-create two words").text.startswith("Created the label two (words):")


def test_a_refused_label_change_changes_nothing(desk):
    email_ticket(desk)
    desk_cmd(desk, "label-create bug")
    before = counts(desk)
    assert not desk_cmd(desk, "label 1 +bug +typo").ok
    assert ticket(desk, 1).labels == []
    assert counts(desk) == before


def test_no_labels_yet(desk):
    assert desk_cmd(desk, "labels").text.startswith("No labels yet")


def test_links_to_tickets_and_urls(desk):
    email_ticket(desk)
    email_ticket(desk, subject="Other")
    assert desk_cmd(desk, "link 1 #2 blocks").text == "Linked #1 to #2 (blocks)."
    assert thread_cmd(desk, 1, "link <https://github.com/acme/app/issues/9>").text == (
        "Linked #1 to https://github.com/acme/app/issues/9 (relates)."
    )
    assert desk_cmd(desk, "link 1 2 blocks").text == "#1 is already linked to #2 (blocks): nothing changed."
    assert desk_cmd(desk, "link 1 2 duplicates").ok
    with desk.db.transaction() as s:
        one = actions.ticket_by_number(s, 1)
        two = actions.ticket_by_number(s, 2)
        assert actions.links_of(s, one) == [
            ("duplicates", 2, None),
            ("relates", None, "https://github.com/acme/app/issues/9"),
        ]
        assert actions.links_of(s, two) == [("duplicated_by", 1, None)]
    # Unlinking works from either side.
    assert desk_cmd(desk, "unlink 2 1").text == "Removed the link from #2 to #1."
    assert thread_cmd(desk, 1, "unlink https://github.com/acme/app/issues/9").ok
    assert desk_cmd(desk, "unlink 1 2").text == "#1 has no link to #2: nothing changed."
    with desk.db.transaction() as s:
        assert s.scalars(select(TicketLink)).all() == []
    assert "Alice linked #1 to this ticket (blocks)" in thread_lines(desk)


def test_two_tickets_have_one_link_whichever_side_asks(desk):
    email_ticket(desk)
    email_ticket(desk, subject="Other")
    assert desk_cmd(desk, "link 1 2").ok
    assert desk_cmd(desk, "link 2 1").text == "#2 is already linked to #1 (relates): nothing changed."
    assert desk_cmd(desk, "link 2 1 duplicates").ok  # now pointing the other way
    with desk.db.transaction() as s:
        one = actions.ticket_by_number(s, 1)
        two = actions.ticket_by_number(s, 2)
        assert actions.links_of(s, one) == [("duplicated_by", 2, None)]
        assert actions.links_of(s, two) == [("duplicates", 1, None)]
    assert desk_cmd(desk, "unlink 2 1").ok
    assert "Alice removed the link to #2" in thread_lines(desk)  # the other side is told too


def commands_at_once(desk, first: str, second: str, *, held_at: str) -> dict[str, str]:
    """PostgreSQL: run `first` until it is about to run a statement starting with `held_at`, then
    `second`; `first` goes on once `second` waits for a lock (or has ended). Their replies, by
    command; one undone by an error (a deadlock) has none."""
    replies: dict[str, str] = {}
    first_holds = threading.Event()

    def hold_the_first(conn, cursor, statement, *_):
        if (
            threading.current_thread().name == "first"
            and not first_holds.is_set()
            and statement.startswith(held_at)
        ):
            first_holds.set()
            wait_until(lambda: lock_waits(desk.db) > 0 or not running[1].is_alive(), f"`{second}` to wait")

    def run(text: str) -> None:
        replies[text] = desk_cmd(desk, text).text

    running = [
        threading.Thread(target=run, args=(text,), name=name)
        for name, text in (("first", first), ("second", second))
    ]
    event.listen(desk.db.engine, "before_cursor_execute", hold_the_first)
    try:
        running[0].start()
        assert first_holds.wait(30)
        running[1].start()
        for thread in running:
            thread.join(60)
    finally:
        event.remove(desk.db.engine, "before_cursor_execute", hold_the_first)
    return replies


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_a_link_asked_from_both_sides_at_once_is_made_once(desk):
    """PostgreSQL: `link 1 2` and `link 2 1` at the same moment. Each locks both tickets, so the
    second waits for the first and then finds its link (each locking only its own ticket, both
    found no link, and adding one each deadlocked on the other's ticket: one link failed)."""
    email_ticket(desk)
    email_ticket(desk, subject="Other")
    replies = commands_at_once(desk, "link 1 2", "link 2 1", held_at="INSERT INTO ticket_links")
    assert replies == {
        "link 1 2": "Linked #1 to #2 (relates).",
        "link 2 1": "#2 is already linked to #1 (relates): nothing changed.",
    }
    with desk.db.transaction() as s:
        assert len(s.scalars(select(TicketLink)).all()) == 1


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("verb", ["link", "unlink"])
def test_a_link_to_a_merged_ticket_while_its_target_closes_takes_turns(desk, verb):
    """PostgreSQL: closing #2 locks it, then tells the Slack thread of #1 (merged into it), which
    names #1; `link 2 1` locks #1, then waits for #2. A ticket's lock leaves its key alone, so the
    notice naming #1 does not wait for the link, and the two take turns (with a full FOR UPDATE on
    #1 they deadlocked)."""
    merged = slack_ticket(desk)
    kept = email_ticket(desk, subject="Other")
    assert desk_cmd(desk, f"merge {merged} into {kept}").ok
    # The close holds #2 once it writes its event; the link runs then.
    replies = commands_at_once(
        desk, f"close {kept}", f"{verb} {kept} {merged}", held_at="INSERT INTO ticket_events"
    )
    # Both answered: neither was undone by a deadlock.
    assert set(replies) == {f"close {kept}", f"{verb} {kept} {merged}"}
    assert ticket(desk, kept).status == "closed"


def test_cc_add_and_remove(desk):
    email_ticket(desk)
    reply = desk_cmd(desk, "cc 1 add <mailto:Erin@Globex.example|Erin@Globex.example> frank@initech.example")
    assert reply.text == (
        "Added erin@globex.example, frank@initech.example to #1: they get the ticket's emails from now on."
    )
    assert [(m["template"], m["to"]) for m in emails(desk)] == [
        ("new_participant", "erin@globex.example"),
        ("new_participant", "frank@initech.example"),
    ]
    assert desk_cmd(desk, "cc 1 add erin@globex.example").text.startswith("Nothing added to #1")
    assert desk_cmd(desk, "cc 1 add support@example.com").text.startswith("Nothing added to #1")
    assert (
        thread_cmd(desk, 1, "cc remove frank@initech.example").text
        == "Removed frank@initech.example from #1."
    )
    with desk.db.transaction() as s:
        people = sorted(s.scalars(select(Participant.email)))
    assert people == ["dan@globex.example", "erin@globex.example"]
    assert thread_lines(desk) == [
        "Alice added erin@globex.example to the ticket",
        "Alice added frank@initech.example to the ticket",
        "Alice removed frank@initech.example from the ticket",
    ]


@pytest.mark.parametrize("lost", ["unsubscribed", "bounced"])
def test_cc_add_brings_back_someone_who_unsubscribed_or_bounced(desk, lost):
    email_ticket(desk)
    assert desk_cmd(desk, "cc 1 add erin@globex.example").ok
    with desk.db.transaction() as s:
        erin = s.scalar(select(Participant).where(Participant.email == "erin@globex.example"))
        if lost == "unsubscribed":
            erin.unsubscribed_at = utcnow()
        else:
            erin.bounced_at, erin.bounce_reason = utcnow(), "552 5.2.2 mailbox full"
    reply = desk_cmd(desk, "cc 1 add erin@globex.example")
    assert reply.text.startswith("Added erin@globex.example to #1")
    with desk.db.transaction() as s:
        erin = s.scalar(select(Participant).where(Participant.email == "erin@globex.example"))
        assert (erin.unsubscribed_at, erin.bounced_at, erin.bounce_reason) == (None, None, None)
    assert thread_lines(desk)[-1] == "Alice added erin@globex.example back to the ticket"
    assert desk_cmd(desk, "cc 1 add erin@globex.example").text.startswith("Nothing added to #1")


def test_merge_moves_the_conversation_and_tells_the_customer_once(desk):
    email_ticket(desk, "dan@globex.example", "Printer", body="It jams")
    email_ticket(desk, "erin@globex.example", "Printer again", body="Still jams")
    reply = thread_cmd(desk, 2, "merge into 1")
    assert reply.ok and reply.text.startswith("Merged #2 into #1")
    with desk.db.transaction() as s:
        source = actions.ticket_by_number(s, 2)
        target = actions.ticket_by_number(s, 1)
        assert source.merged_into_id == target.id and source.status == "closed"
        bodies = list(s.scalars(select(Message.body_markdown).where(Message.ticket_id == target.id)))
        assert bodies == ["It jams", "Still jams"]
        assert sorted(s.scalars(select(Participant.email).where(Participant.ticket_id == target.id))) == [
            "dan@globex.example",
            "erin@globex.example",
        ]
        # Later replies to #2 land on #1: by reply address and by the mail thread.
        assert actions.ticket_by_reply_key(s, source.reply_key).id == target.id
        assert actions.ticket_by_email_ids(s, ["<Printer again.2@globex.example>"]).id == target.id
        assert s.scalar(select(EmailId.ticket_id).where(EmailId.message_id.like("%again%"))) == target.id
        links = [(kind, number) for kind, number, _ in actions.links_of(s, target) if number]
        assert links == [("duplicated_by", 2)]
    assert [(m["template"], m["to"]) for m in emails(desk)] == [("merged", "erin@globex.example")]
    assert "Alice merged this ticket into #1" in thread_lines(desk)
    assert "Alice merged #2 into this ticket" in thread_lines(desk)
    # The merged ticket takes no more triage; the target does.
    before = counts(desk)
    assert desk_cmd(desk, "priority 2 high").text == "#2 was merged into #1: work on #1 instead."
    assert desk_cmd(desk, "merge 1 into 2").text == "#2 was merged into #1: work on #1 instead."
    assert counts(desk) == before
    assert desk_cmd(desk, "show 2").ok


def test_merge_from_a_slack_thread_routes_later_replies(desk):
    email_ticket(desk, "dan@globex.example", "Printer")
    slack_ticket(desk, thread_ts="1700000000.000200")
    assert desk_cmd(desk, "merge 2 into 1").ok
    with desk.db.transaction() as s:
        found = actions.ticket_by_slack_thread(s, "C0CONNECT", "1700000000.000200")
        assert found is not None and found.number == 1
        customer = actions.customer_for_slack_user(s, "U0EXTERIN", name="Erin", team_id="T0EXT")
        actions.add_customer_message(
            s,
            desk.policy,
            found,
            customer=customer,
            body_markdown="more",
            source="slack",
            slack_channel="C0CONNECT",
            slack_ts="1700000000.000300",
        )
    with desk.db.transaction() as s:
        assert s.scalar(select(Message.ticket_id).where(Message.slack_ts == "1700000000.000300")) == found.id
    # The customer's Slack thread was told once, by the desk.
    assert [row.payload["template"] for row in outbox_rows(desk, "slack.origin_line")] == ["merged"]


def test_note_is_internal_and_posted_in_the_thread(desk):
    email_ticket(desk)
    reply = desk_cmd(desk, "note 1 *Check* the <@U0BOB> logs &amp; config")
    assert reply.ok and "Internal note added to #1" in reply.text
    with desk.db.transaction() as s:
        note = s.scalars(select(Message).where(Message.visibility == "internal")).one()
        assert note.body_markdown == "**Check** the @Bob logs & config"
        assert note.author_slack_id == "U0ALICE" and note.source == "command"
    assert [row.message_id for row in outbox_rows(desk, "slack.thread_post")] == [note.id]
    assert emails(desk) == []


def test_new_opens_a_ticket_whose_first_staff_message_is_the_first_email(desk):
    reply = desk_cmd(
        desk, "new <mailto:Frank@Initech.example|Frank@Initech.example> VPN &amp; &lt;b&gt;access&lt;/b&gt;"
    )
    assert reply.ok and reply.text.startswith("Opened #1 for frank@initech.example")
    assert "<#C0TRIAGE>" in reply.text
    with desk.db.transaction() as s:
        created = actions.ticket_by_number(s, 1)
        assert created.origin == "staff" and created.subject == "VPN & <b>access</b>"
        assert created.requester.email == "frank@initech.example"
        assert created.triage_channel == "C0TRIAGE"
    # No acknowledgement: the customer did not write. The card goes to the triage channel.
    assert emails(desk) == [] and len(outbox_rows(desk, "slack.card")) == 1
    with desk.db.transaction() as s:
        actions.add_staff_reply(
            s,
            desk.policy,
            actions.ticket_by_number(s, 1),
            author=Actor("Alice", slack_id="U0ALICE"),
            body_markdown="Hello Frank",
            slack_channel="C0TRIAGE",
            slack_ts="1.5",
        )
    assert [(m["template"], m["to"]) for m in emails(desk)] == [("staff_reply", "frank@initech.example")]


def test_an_email_customer_merged_into_a_slack_ticket_keeps_hearing(desk):
    slack_ticket(desk)
    email_ticket(desk, "dan@globex.example", "Same problem")
    assert desk_cmd(desk, "merge 2 into 1").ok
    with desk.db.transaction() as s:
        target = actions.ticket_by_number(s, 1)
        actions.add_staff_reply(
            s,
            desk.policy,
            target,
            author=Actor("Alice", slack_id="U0ALICE"),
            body_markdown="Fixed",
            slack_channel="C0TRIAGE",
            slack_ts="1.7",
        )
    # The Slack customer in their thread, the merged-in email customer by email.
    assert len(outbox_rows(desk, "slack.origin_post")) == 1
    assert [(m["template"], m["to"]) for m in emails(desk)] == [
        ("merged", "dan@globex.example"),
        ("staff_reply", "dan@globex.example"),
    ]
    desk_cmd(desk, "close 1")
    assert [row.payload["template"] for row in outbox_rows(desk, "slack.origin_line")] == ["closed"]
    assert emails(desk)[-1]["template"] == "closed"
