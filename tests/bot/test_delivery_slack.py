"""Each Slack performer against the emulator, through the real slack_sdk client over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from bot.delivery import SlackDelivery
from bot.outcomes import Done, Outcome, Retry
from bot.slack_users import PROFILE_MAX_AGE
from bot.worker_settle import settle
from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, CONNECT, ERIN, TRIAGE, avatar_url
from store import actions, outbox
from store.context import Desk
from store.models import Attachment, Delivery, Message, SlackUser, Ticket, TicketEvent, utcnow
from store.outbox import Kind, OutboxItem
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    STAFF,
    client_for,
    desk_fixture,
    desk_for,
    drain,
    emulator_fixture,
    open_email_ticket,
    open_slack_ticket,
    posts_by_row,
    rows,
    staff_reply,
    thread,
    worker_for,
)
from tests.conftest import POSTGRES_URL


@pytest.fixture
def delivery(desk: Desk, emulator: SlackEmulator) -> SlackDelivery:
    return SlackDelivery(desk, client_for(emulator))


def deliver(desk: Desk, delivery: SlackDelivery) -> None:
    drain(worker_for(desk, delivery.performers()), desk.db)


def ticket(desk: Desk, ticket_id: int) -> Ticket:
    with desk.db.transaction() as session:
        found = session.get(Ticket, ticket_id)
        assert found is not None
        return found


def replied_on_a_slack_ticket(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator, text: str
) -> tuple[int, int]:
    """A Slack Connect ticket, delivered, and a staff reply waiting to go: their ids."""
    ticket_id = open_slack_ticket(desk, emulator)
    deliver(desk, delivery)
    return ticket_id, staff_reply(desk, ticket_id, text)


def test_card_is_posted_once_then_updated_in_place(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_email_ticket(desk, subject="Printer on fire")
    deliver(desk, delivery)
    card_ts = ticket(desk, ticket_id).triage_ts
    assert card_ts is not None
    card = emulator.message(TRIAGE, card_ts)
    assert card is not None and "#1 Printer on fire" in card.text and "Status: Open" in card.text

    with desk.db.transaction() as session:
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.set_priority(session, opened, "urgent", STAFF)
        actions.set_status(session, desk.policy, opened, "pending", STAFF)
    deliver(desk, delivery)

    top_level = [m for m in emulator.messages(TRIAGE) if not m.is_reply]
    assert [m.ts for m in top_level] == [card_ts]  # updated, never posted again
    card = emulator.message(TRIAGE, card_ts)
    assert card is not None and "Priority: Urgent" in card.text and "Status: Pending" in card.text
    assert len(emulator.calls_to("chat.update", channel=TRIAGE, ts=card_ts)) == 1  # one row for both changes


def test_customer_message_goes_into_the_thread_under_the_card(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_email_ticket(desk, body="The printer **burns** since <b>Monday</b>.")
    deliver(desk, delivery)
    opened = ticket(desk, ticket_id)
    replies = thread(emulator, TRIAGE, str(opened.triage_ts))[1:]
    assert len(replies) == 1
    text = replies[0].text
    assert "Dan Dorsey" in text and "dan@globex.example" in text and "by email" in text
    assert "*burns*" in str(replies[0].blocks)
    with desk.db.transaction() as session:
        message = session.query(Message).one()
        assert (message.mirror_channel, message.mirror_ts) == (TRIAGE, replies[0].ts)


def test_a_60000_character_body_becomes_several_posts_in_order(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 200 for n in range(60)]
    body = "\n\n".join(paragraphs)
    assert len(body) > 60_000
    ticket_id = open_email_ticket(desk, body=body)
    deliver(desk, delivery)

    replies = thread(emulator, TRIAGE, str(ticket(desk, ticket_id).triage_ts))[1:]
    assert len(replies) >= 5
    shown = "\n".join(str(block) for reply in replies for block in reply.blocks or [])
    positions = [shown.index(f"Paragraph {n}:") for n in range(60)]
    assert positions == sorted(positions)  # every paragraph, in order
    post_row = rows(desk.db, Kind.THREAD_POST)[0]
    assert sorted(posts_by_row(emulator)[(post_row.id, part)] for part in range(len(replies))) == [1] * len(
        replies
    )


def test_attachments_are_uploaded_into_the_thread_with_files_v2(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_email_ticket(
        desk, attachments=[("screenshot.png", b"\x89PNG fake image"), ("log.txt", b"line 1\nline 2\n")]
    )
    deliver(desk, delivery)

    card_ts = str(ticket(desk, ticket_id).triage_ts)
    shares = [m for m in thread(emulator, TRIAGE, card_ts) if m.files]
    assert len(shares) == 1 and len(shares[0].files) == 2
    uploaded = {emulator.files[file_id].name: emulator.files[file_id].content for file_id in shares[0].files}
    assert uploaded == {"screenshot.png": b"\x89PNG fake image", "log.txt": b"line 1\nline 2\n"}
    complete = emulator.calls_to("files.completeUploadExternal")
    assert len(complete) == 1 and complete[0].params["thread_ts"] == card_ts
    with desk.db.transaction() as session:
        recorded = {a.filename: a.slack_file_id for a in session.query(Attachment)}
    assert set(recorded.values()) == set(shares[0].files)


def test_slack_connect_ticket_gets_an_ack_and_staff_replies_under_their_name(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator, "VPN is down")
    deliver(desk, delivery)
    opened = ticket(desk, ticket_id)
    origin = thread(emulator, CONNECT, str(opened.origin_thread_ts))
    assert [m.text for m in origin[1:]] == ["Ticket #1 opened — we'll reply here."]
    assert origin[1].username == "Support"

    message_id = staff_reply(
        desk, ticket_id, "Try **restarting** it.", attachments=[("steps.txt", b"1. off\n2. on\n")]
    )
    deliver(desk, delivery)

    origin = thread(emulator, CONNECT, str(opened.origin_thread_ts))
    reply = origin[2]
    # Alice's display name is "alice"; her avatar is her profile picture.
    assert reply.username == "alice" and reply.icon_url == avatar_url(ALICE, 192)
    assert "*restarting*" in str(reply.blocks)
    assert [emulator.files[f].name for m in origin[3:] for f in m.files] == ["steps.txt"]
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None
        assert (message.mirror_channel, message.mirror_ts) == (CONNECT, reply.ts)
        assert message.delivery == Delivery.DELIVERED
        assert session.get(SlackUser, ALICE) is not None  # looked up once, cached for the next reply
    assert len(emulator.calls_to("users.info")) == 1


def _ticket_with_one_reply(desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator) -> int:
    ticket_id = open_slack_ticket(desk, emulator)
    staff_reply(desk, ticket_id, "First.")
    deliver(desk, delivery)
    return ticket_id


def _age_cached_profile(desk: Desk, user_id: str) -> None:
    with desk.db.transaction() as session:
        cached = session.get(SlackUser, user_id)
        assert cached is not None
        cached.fetched_at = utcnow() - PROFILE_MAX_AGE - timedelta(minutes=1)


def test_a_renamed_staff_member_shows_their_new_name_once_the_cached_profile_is_old(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = _ticket_with_one_reply(desk, delivery, emulator)
    emulator.workspace.users[ALICE].display_name = "alice.archer"
    staff_reply(desk, ticket_id, "Second, while the cached profile is fresh.")
    deliver(desk, delivery)
    _age_cached_profile(desk, ALICE)
    staff_reply(desk, ticket_id, "Third, once it is old.")
    deliver(desk, delivery)

    origin = thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
    assert [m.username for m in origin[2:]] == ["alice", "alice", "alice.archer"]
    assert len(emulator.calls_to("users.info")) == 2


def test_an_old_cached_profile_still_names_the_reply_while_slack_cannot_answer(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = _ticket_with_one_reply(desk, delivery, emulator)
    _age_cached_profile(desk, ALICE)
    emulator.add_fault("users.info", Fault.server_error(503), times=None)
    staff_reply(desk, ticket_id, "Second.")
    deliver(desk, delivery)

    origin = thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
    assert [m.username for m in origin[2:]] == ["alice", "alice"]
    assert len(emulator.calls_to("users.info")) >= 2  # it did ask, and went on with what it had


def test_display_name_falls_back_to_real_name(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    with desk.db.transaction() as session:
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.add_staff_reply(
            session,
            desk.policy,
            opened,
            author=actions.Actor("Bob Baker", slack_id="U0BOB"),
            body_markdown="On it.",
            slack_channel=None,
            slack_ts=None,
        )
    deliver(desk, delivery)
    origin = thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
    assert origin[-1].username == "Bob Baker"  # Bob has no display name


def test_reply_withdrawn_before_delivery_is_not_posted(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Oops, wrong ticket")
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None
        # Deleted after its row was due but before the worker ran it.
        message.deleted_at = message.created_at
    deliver(desk, delivery)
    origin = thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
    assert "Oops" not in " ".join(m.text for m in origin)


def test_status_notices_reach_the_customer_thread(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    with desk.db.transaction() as session:
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.set_status(session, desk.policy, opened, "resolved", STAFF)
        actions.set_status(session, desk.policy, opened, "open", STAFF)
    deliver(desk, delivery)
    origin = thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
    texts = [m.text for m in origin[2:]]
    assert texts[0].startswith("Ticket #1 is resolved") and texts[1].startswith("Ticket #1 is open again")
    triage = thread(emulator, TRIAGE, str(ticket(desk, ticket_id).triage_ts))
    assert any("set status to resolved" in m.text for m in triage)


def test_edits_and_deletions_are_mirrored_onto_the_copy(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    message_id = staff_reply(desk, ticket_id, "First version")
    deliver(desk, delivery)
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, ticket_id)
        assert message is not None and opened is not None
        copy_ts = str(message.mirror_ts)
        actions.edit_slack_message(session, opened, message, body_markdown="Second version")
    deliver(desk, delivery)
    copy = emulator.message(CONNECT, copy_ts)
    assert copy is not None and "Second version" in copy.text

    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, ticket_id)
        assert message is not None and opened is not None
        actions.delete_slack_message(session, opened, message)
    deliver(desk, delivery)
    copy = emulator.message(CONNECT, copy_ts)
    assert copy is not None and copy.deleted


def delete_reply(desk: Desk, ticket_id: int, message_id: int) -> None:
    with desk.db.transaction() as session:
        message, opened = session.get(Message, message_id), session.get(Ticket, ticket_id)
        assert message is not None and opened is not None
        actions.delete_slack_message(session, opened, message)


def customer_thread_files(desk: Desk, emulator: SlackEmulator, ticket_id: int) -> list[str]:
    root = str(ticket(desk, ticket_id).origin_thread_ts)
    return [emulator.files[f].name for m in thread(emulator, CONNECT, root) if not m.deleted for f in m.files]


@pytest.mark.parametrize("body", ["Here is the fixed invoice.", ""])
def test_a_deleted_reply_takes_its_files_out_of_the_customers_thread(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator, body: str
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    message_id = staff_reply(desk, ticket_id, body, attachments=[("invoice.pdf", b"%PDF-1.7 wrong customer")])
    deliver(desk, delivery)
    assert customer_thread_files(desk, emulator, ticket_id) == ["invoice.pdf"]

    delete_reply(desk, ticket_id, message_id)
    deliver(desk, delivery)
    assert customer_thread_files(desk, emulator, ticket_id) == []
    root = str(ticket(desk, ticket_id).origin_thread_ts)
    assert [m.text for m in thread(emulator, CONNECT, root)[1:] if not m.deleted] == [
        "Ticket #1 opened — we'll reply here."
    ]
    assert [row.state for row in rows(desk.db, "slack.mirror_delete")] == ["done"]


def test_a_reply_of_files_alone_names_them_under_the_staff_members_name(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    staff_reply(desk, ticket_id, "", attachments=[("fix_*1*.txt", b"patch"), ("notes.txt", b"n")])
    deliver(desk, delivery)
    root = str(ticket(desk, ticket_id).origin_thread_ts)
    named = thread(emulator, CONNECT, root)[2]
    assert named.username == "alice" and named.icon_url == avatar_url(ALICE, 192)
    assert named.text == "Sent 2 files: fix_*1*.txt, notes.txt"
    assert customer_thread_files(desk, emulator, ticket_id) == ["fix_*1*.txt", "notes.txt"]


def two_slack_tickets_merged(desk: Desk, emulator: SlackEmulator) -> tuple[int, int]:
    """Dan and then his colleague Erin wrote in the Slack Connect channel and Erin's ticket was merged
    into Dan's: a reply on the first goes to both customer threads. The two tickets' ids. (Two
    requesters: one person's own duplicate is told once, in the thread the merge sent them to.)"""
    kept = open_slack_ticket(desk, emulator, "VPN is down")
    merged = open_slack_ticket(desk, emulator, "VPN is still down", user=ERIN)
    with desk.db.transaction() as session:
        source, target = session.get(Ticket, merged), session.get(Ticket, kept)
        assert source is not None and target is not None
        actions.merge(session, desk.policy, source, target, STAFF)
    return kept, merged


def test_edits_and_deletions_reach_every_customer_thread_the_reply_went_to(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    # A reply on the ticket goes to both threads, and an edit or a deletion must follow it into both.
    kept, merged = two_slack_tickets_merged(desk, emulator)
    message_id = staff_reply(desk, kept, "First version")
    deliver(desk, delivery)
    threads = [str(ticket(desk, ticket_id).origin_thread_ts) for ticket_id in (kept, merged)]

    def copies() -> list[Any]:
        return [m for ts in threads for m in thread(emulator, CONNECT, ts) if "version" in m.text]

    assert len(copies()) == 2  # one in each thread
    copy_ts = [m.ts for m in copies()]

    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, kept)
        assert message is not None and opened is not None
        outcome = actions.edit_slack_message(session, opened, message, body_markdown="Second version")
    assert outcome == "mirrored"
    deliver(desk, delivery)
    for ts in copy_ts:
        copy = emulator.message(CONNECT, ts)
        assert copy is not None and "Second version" in copy.text and "First" not in copy.text

    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, kept)
        assert message is not None and opened is not None
        assert actions.delete_slack_message(session, opened, message) == "mirrored"
    deliver(desk, delivery)
    for ts in copy_ts:
        copy = emulator.message(CONNECT, ts)
        assert copy is not None and copy.deleted


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_an_edit_committed_while_a_copy_in_a_merged_thread_settles_reaches_that_copy(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """PostgreSQL, where a settle and an edit interleave: the edit commits while the copy posted
    into a merged ticket's thread is being settled, just before the settle locks the reply. The
    edit found no finished copy to mirror, so the settle must compare what it posted with the reply
    as it now stands, or the copy keeps the first text."""
    kept, merged = two_slack_tickets_merged(desk, emulator)
    deliver(desk, delivery)
    message_id = staff_reply(desk, kept, "Your refund is on its way")
    # Both copies are claimed; the one for the merged ticket's thread is posted. The other stays
    # claimed, so the settle leaves the receipt pending.
    claimed = outbox.claim_due(desk.db, "worker-1", kinds=frozenset({Kind.ORIGIN_POST.value}))
    [item] = [row for row in claimed if row.ticket_id == merged]
    [other] = [row for row in claimed if row.ticket_id == kept]
    outcome = asyncio.run(delivery.performers()[item.kind](item))
    edits: list[str] = []

    def edit_before_the_locked_read(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not edits and "FOR UPDATE" in statement and "FROM messages" in statement:
            # Another connection, committing at once: the settle holds no lock the edit needs yet.
            edits.append(change_reply(desk, kept, message_id, 1, reworded("Your refund left today")))

    event.listen(desk.db.engine, "before_cursor_execute", edit_before_the_locked_read)
    try:
        assert settle(desk.db, "worker-1", item, outcome) == "done"
    finally:
        event.remove(desk.db.engine, "before_cursor_execute", edit_before_the_locked_read)
    assert edits == ["already_sent"]  # the copy was not done yet when the edit looked for it
    # The other copy is posted after the edit, with the edited text.
    assert settle(desk.db, "worker-1", other, asyncio.run(delivery.performers()[other.kind](other))) == "done"
    deliver(desk, delivery)

    copies = {
        ticket_id: [
            m
            for m in thread(emulator, CONNECT, str(ticket(desk, ticket_id).origin_thread_ts))
            if "refund" in m.text
        ]
        for ticket_id in (merged, kept)
    }
    assert all(len(found) == 1 and "left today" in found[0].text for found in copies.values())
    updates = emulator.calls_to("chat.update", channel=CONNECT)
    assert [call.params.get("ts") for call in updates] == [copies[merged][0].ts]  # that copy, once


def posted_not_yet_done(
    desk: Desk, delivery: SlackDelivery, kind: Kind = Kind.ORIGIN_POST
) -> tuple[OutboxItem, Outcome]:
    """A worker takes a post row (by default a staff reply's copy for the customer's thread) and
    posts it; the row is not done yet."""
    [item] = outbox.claim_due(desk.db, "worker-1", kinds=frozenset({kind.value}))
    return item, asyncio.run(delivery.performers()[item.kind](item))


ReplyChange = Callable[[Session, Ticket, Message, datetime], str]


def change_reply(desk: Desk, ticket_id: int, message_id: int, window_offset: int, change: ReplyChange) -> str:
    """Edit or delete a staff reply `window_offset` seconds from the end of its undo window."""
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, ticket_id)
        assert message is not None and opened is not None and message.deliver_after is not None
        return change(session, opened, message, message.deliver_after + timedelta(seconds=window_offset))


def reworded(body: str) -> ReplyChange:
    def edit(session: Session, opened: Ticket, message: Message, at: datetime) -> str:
        return actions.edit_slack_message(session, opened, message, body_markdown=body, now=at)

    return edit


def deleted(session: Session, opened: Ticket, message: Message, at: datetime) -> str:
    return actions.delete_slack_message(session, opened, message, now=at)


def test_a_copy_posted_while_its_reply_was_deleted_is_deleted_too(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Sent to the wrong customer")
    # A worker takes the reply as its window closes and posts it; the deletion comes in meanwhile.
    item, outcome = posted_not_yet_done(desk, delivery)
    assert change_reply(desk, ticket_id, message_id, -1, deleted) == "already_sent"
    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "wrong customer" in m.text]

    assert settle(desk.db, "worker-1", item, outcome) == "done"
    deliver(desk, delivery)

    late = emulator.message(CONNECT, copy.ts)
    assert late is not None and late.deleted
    triage = thread(emulator, TRIAGE, str(ticket(desk, ticket_id).triage_ts))
    assert any("Deleted while it was being delivered" in m.text for m in triage)


@pytest.mark.parametrize("window_offset", [-1, 1], ids=["closing", "closed"])
@pytest.mark.parametrize("row_done", [False, True], ids=["posting", "posted"])
def test_an_edit_made_as_its_reply_was_posted_reaches_that_copy(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator, window_offset: int, row_done: bool
) -> None:
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Your refund is on its way")
    # A worker takes the reply and posts it; the edit comes in before its row is done or just after,
    # as the window closes (the reply still counts as waiting by the edit's clock) or after it.
    item, outcome = posted_not_yet_done(desk, delivery)
    if row_done:
        assert settle(desk.db, "worker-1", item, outcome) == "done"
    change_reply(desk, ticket_id, message_id, window_offset, reworded("Your refund left today"))
    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text]
    assert "on its way" in copy.text

    if not row_done:
        assert settle(desk.db, "worker-1", item, outcome) == "done"
    deliver(desk, delivery)
    deliver(desk, delivery)

    late = emulator.message(CONNECT, copy.ts)
    assert "left today" in late.text and not late.deleted
    assert len(emulator.calls_to("chat.update", channel=CONNECT, ts=copy.ts)) == 1


def test_an_edit_inside_the_window_reaches_a_copy_posted_while_an_email_copy_still_waits(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """The reply also goes by email to a Cc'd participant, so it still counts as waiting after its
    Slack copy is posted (a worker's clock a little ahead): the edit reaches that copy as well."""
    ticket_id = open_slack_ticket(desk, emulator)
    deliver(desk, delivery)
    with desk.db.transaction() as session:
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.add_participant(
            session, desk.policy, opened, "erin@globex.example", actions.DESK, notify=False
        )
    message_id = staff_reply(desk, ticket_id, "Your refund is on its way")
    item, outcome = posted_not_yet_done(desk, delivery)
    assert settle(desk.db, "worker-1", item, outcome) == "done"

    edit = reworded("Your refund left today")
    assert change_reply(desk, ticket_id, message_id, -1, edit) == "changed_before_delivery"
    [update] = outbox.claim_due(desk.db, "worker-1", kinds=frozenset({Kind.MIRROR_UPDATE.value}))
    assert (
        settle(desk.db, "worker-1", update, asyncio.run(delivery.performers()[update.kind](update))) == "done"
    )

    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text]
    assert "left today" in copy.text


def test_a_copy_finished_by_a_later_attempt_follows_the_text_it_was_posted_with(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """The reply's text goes up but its file does not (Slack keeps answering 503), and the reply is
    edited before the next attempt, which keeps the part already posted and uploads the file: the
    copy still says the first text, so it is updated to the edit, once."""
    ticket_id = open_slack_ticket(desk, emulator)
    deliver(desk, delivery)
    message_id = staff_reply(
        desk, ticket_id, "Your refund is on its way", attachments=[("refund.txt", b"reference 123\n")]
    )
    emulator.add_fault("files.getUploadURLExternal", Fault.server_error(503), times=None)
    item, outcome = posted_not_yet_done(desk, delivery)
    assert isinstance(outcome, Retry)
    assert settle(desk.db, "worker-1", item, outcome) == "pending"
    emulator.clear_faults()
    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text]

    assert change_reply(desk, ticket_id, message_id, 1, reworded("Your refund left today")) == "already_sent"
    deliver(desk, delivery)
    deliver(desk, delivery)

    assert [m.ts for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text] == [copy.ts]
    assert "left today" in emulator.message(CONNECT, copy.ts).text
    assert len(emulator.calls_to("chat.update", channel=CONNECT, ts=copy.ts)) == 1


def test_a_copy_found_in_slack_after_its_answer_was_lost_is_brought_up_to_the_edit(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """The post took effect but its answer was lost, and the reply was edited before the next
    attempt found the copy in the thread: the copy says the first text, not the edit the attempt
    would post, so it is updated, once."""
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Your refund is on its way")
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect(), times=1)
    item, outcome = posted_not_yet_done(desk, delivery)
    assert isinstance(outcome, Retry)
    assert settle(desk.db, "worker-1", item, outcome) == "pending"

    assert change_reply(desk, ticket_id, message_id, 1, reworded("Your refund left today")) == "already_sent"
    deliver(desk, delivery)
    deliver(desk, delivery)

    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text]
    assert "left today" in copy.text
    assert len(emulator.calls_to("chat.update", channel=CONNECT, ts=copy.ts)) == 1


def test_a_copy_of_the_text_as_it_stands_is_not_updated_again(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """An edit the worker read before posting is in the copy already: no second call for it."""
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Your refund is on its way")
    edit = reworded("Your refund left today")
    assert change_reply(desk, ticket_id, message_id, -5, edit) == "changed_before_delivery"
    item, outcome = posted_not_yet_done(desk, delivery)
    assert settle(desk.db, "worker-1", item, outcome) == "done"
    deliver(desk, delivery)

    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    [copy] = [m for m in thread(emulator, CONNECT, origin_ts) if "refund" in m.text]
    assert "left today" in copy.text
    assert emulator.calls_to("chat.update", channel=CONNECT) == []


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_a_customer_message_changed_while_its_triage_copy_was_posted_changes_that_copy(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator, change: str
) -> None:
    ticket_id = open_slack_ticket(desk, emulator, "My password is hunter2")
    assert settle(desk.db, "worker-1", *posted_not_yet_done(desk, delivery, Kind.CARD)) == "done"
    # A worker copies the message into the triage thread; the customer edits or deletes it meanwhile.
    item, outcome = posted_not_yet_done(desk, delivery, Kind.THREAD_POST)
    with desk.db.transaction() as session:
        message = session.scalar(select(Message).where(Message.ticket_id == ticket_id))
        opened = session.get(Ticket, ticket_id)
        assert message is not None and opened is not None
        if change == "edited":
            actions.edit_slack_message(session, opened, message, body_markdown="My password is (removed)")
        else:
            actions.delete_slack_message(session, opened, message)
    triage_ts = str(ticket(desk, ticket_id).triage_ts)
    [copy] = [m for m in thread(emulator, TRIAGE, triage_ts) if "hunter2" in m.text and m.ts != triage_ts]

    assert settle(desk.db, "worker-1", item, outcome) == "done"
    deliver(desk, delivery)
    deliver(desk, delivery)

    late = emulator.message(TRIAGE, copy.ts)
    assert "hunter2" not in late.text or late.deleted
    if change == "edited":
        assert "(removed)" in late.text and not late.deleted
    assert len(emulator.calls_to("chat.update" if change == "edited" else "chat.delete", ts=copy.ts)) == 1


def test_an_email_copy_in_the_triage_thread_records_no_text_to_follow(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """An email cannot change after it arrived: its copy's row records no text to compare."""
    open_email_ticket(desk)
    assert settle(desk.db, "worker-1", *posted_not_yet_done(desk, delivery, Kind.CARD)) == "done"
    item, outcome = posted_not_yet_done(desk, delivery, Kind.THREAD_POST)
    assert isinstance(outcome, Done) and outcome.result is not None and "body" not in outcome.result
    assert settle(desk.db, "worker-1", item, outcome) == "done"


def test_receipts_are_reactions_and_repeats_are_harmless(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_email_ticket(desk)
    deliver(desk, delivery)
    card_ts = str(ticket(desk, ticket_id).triage_ts)
    staff_ts = emulator.user_post(ALICE, TRIAGE, "Here is the fix", thread_ts=card_ts)
    # The reaction was put on by hand already: Slack answers already_reacted, which is done.
    emulator.user_react(ALICE, TRIAGE, staff_ts, "white_check_mark")
    staff_reply(desk, ticket_id, "Here is the fix", slack_ts=staff_ts)
    performers = delivery.performers()
    performers[Kind.EMAIL.value] = _instant_email
    drain(worker_for(desk, performers), desk.db)
    message = emulator.message(TRIAGE, staff_ts)
    assert message is not None
    assert "hourglass_flowing_sand" not in message.reactions  # pending, then removed on delivery
    assert "U0BOT" in message.reactions["white_check_mark"]


async def _instant_email(item: object) -> actions.common.Actor:  # type: ignore[name-defined]
    from bot.outcomes import Done

    return Done()  # type: ignore[return-value]


def test_thread_lines_and_notes_are_posted_and_marked(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_email_ticket(desk)
    with desk.db.transaction() as session:
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.add_note(session, opened, author=STAFF, body_markdown="Customer is a **VIP**")
    deliver(desk, delivery)
    replies = thread(emulator, TRIAGE, str(ticket(desk, ticket_id).triage_ts))
    note = replies[-1]
    assert "Internal note" in note.text and "Alice Archer" in note.text and "*VIP*" in str(note.blocks)


def test_a_desk_notice_is_posted_at_the_top_of_the_triage_channel_once(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    text = ":warning: An incoming email could not be turned into a ticket after 5 attempts (boom)."
    with desk.db.transaction() as session:
        outbox.enqueue(session, Kind.DESK_NOTICE, lane=outbox.DESK_NOTICE_LANE, payload={"text": text})
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect())  # posted, the answer lost
    deliver(desk, delivery)
    posted = [m for m in emulator.messages(TRIAGE) if m.text == text]
    assert len(posted) == 1 and posted[0].thread_ts is None
    assert [row.state for row in rows(desk.db, Kind.DESK_NOTICE.value)] == ["done"]


def test_a_customers_edit_and_deletion_reach_the_triage_copy(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator, "The VPN drops every hour")
    deliver(desk, delivery)
    with desk.db.transaction() as session:
        message = session.query(Message).one()
        opened = session.get(Ticket, ticket_id)
        assert opened is not None and message.mirror_channel == TRIAGE
        copy_ts = str(message.mirror_ts)
        actions.edit_slack_message(
            session, opened, message, body_markdown="The VPN drops every **ten minutes**"
        )
    deliver(desk, delivery)
    copy = emulator.message(TRIAGE, copy_ts)
    assert copy is not None and "*ten minutes*" in str(copy.blocks) and "Dan Dorsey" in copy.text

    with desk.db.transaction() as session:
        message = session.query(Message).one()
        opened = session.get(Ticket, ticket_id)
        assert opened is not None
        actions.delete_slack_message(session, opened, message)
    deliver(desk, delivery)
    copy = emulator.message(TRIAGE, copy_ts)
    assert copy is not None and copy.deleted


def test_an_edit_longer_than_the_copy_is_cut_to_fit_and_says_so(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id = open_slack_ticket(desk, emulator)
    message_id = staff_reply(desk, ticket_id, "Short answer")
    deliver(desk, delivery)
    longer = "\n\n".join(f"Step {n}: " + "word " * 400 for n in range(20))
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        opened = session.get(Ticket, ticket_id)
        assert message is not None and opened is not None
        copy_ts = str(message.mirror_ts)
        actions.edit_slack_message(session, opened, message, body_markdown=longer)
    deliver(desk, delivery)
    copy = emulator.message(CONNECT, copy_ts)
    assert copy is not None and "Step 0:" in str(copy.blocks)
    assert "longer than this copy can hold" in str(copy.blocks[-1])  # type: ignore[index]


def first_responses(desk: Desk, ticket_id: int) -> list[int | None]:
    """The messages the ticket's `first_response` events name."""
    with desk.db.read() as session:
        events = session.scalars(
            select(TicketEvent).where(
                TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "first_response"
            )
        )
        return [event.data.get("message_id") for event in events]


def test_a_reply_is_the_first_response_once_it_reaches_the_customer(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Your refund is on its way")
    assert first_responses(desk, ticket_id) == [] and ticket(desk, ticket_id).first_response_at is None
    deliver(desk, delivery)
    assert first_responses(desk, ticket_id) == [message_id]
    assert ticket(desk, ticket_id).first_response_at is not None
    staff_reply(desk, ticket_id, "It left today")
    deliver(desk, delivery)
    assert first_responses(desk, ticket_id) == [message_id]


def test_a_reply_deleted_before_it_went_out_is_no_first_response(
    desk: Desk, delivery: SlackDelivery, emulator: SlackEmulator
) -> None:
    """Deleted just after its window closed, before a worker took it: its row is skipped."""
    ticket_id, message_id = replied_on_a_slack_ticket(desk, delivery, emulator, "Sent to the wrong customer")
    assert change_reply(desk, ticket_id, message_id, 1, deleted) == "already_sent"
    deliver(desk, delivery)
    origin_ts = str(ticket(desk, ticket_id).origin_thread_ts)
    assert not [m for m in thread(emulator, CONNECT, origin_ts) if "wrong customer" in m.text]
    assert first_responses(desk, ticket_id) == [] and ticket(desk, ticket_id).first_response_at is None
    # Withdrawn, not failed: nobody is told it could not be delivered.
    with desk.db.read() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.delivery == Delivery.CANCELLED
    triage = thread(emulator, TRIAGE, str(ticket(desk, ticket_id).triage_ts))
    assert not [m for m in triage if "Not delivered" in m.text]


def test_a_desk_line_links_the_ticket_it_names_not_a_number_in_a_name() -> None:
    from bot.delivery.texts import link_ticket_number

    url = "https://acme.slack.com/archives/C0TRIAGE/p1"
    assert link_ticket_number("Team #1 merged this ticket into #1", 1, url) == (
        f"Team #1 merged this ticket into <{url}|#1>"
    )
    assert link_ticket_number("alice merged #1 into this ticket", 1, url) == (
        f"alice merged <{url}|#1> into this ticket"
    )
    # `#1` is not the start of `#12`; a line without the number stays as it is.
    assert link_ticket_number("alice linked #12 (blocks)", 1, url) == "alice linked #12 (blocks)"
