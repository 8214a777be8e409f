"""Slack refusing or failing deliveries, driven through the real worker loop, the real
slack_sdk client and the emulator's fault injection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import pytest

from bot.worker import Worker
from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, CAROL, CONNECT, HELP, TRIAGE
from store import actions
from store.context import Desk
from store.models import Delivery, Message, OutboxState, Ticket
from store.outbox import Kind
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    STAFF,
    desk_fixture,
    emulator_fixture,
    open_email_ticket,
    open_slack_ticket,
    posts_by_row,
    rows,
    staff_reply,
    thread,
)
from tests.faults.kit import duplicates_and_losses
from tests.faults.test_slack_outages import slack_worker

WAIT = 20.0  # bounds a broken test; never an assertion about speed


def run_worker_until(worker: Worker, predicate: Any, *, timeout: float = WAIT) -> bool:
    """The real loop until `predicate()` holds (True) or `timeout` passes (False); then a clean stop."""

    async def run() -> bool:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while not await asyncio.to_thread(predicate):
                if time.monotonic() > deadline or task.done():
                    return False
                await asyncio.sleep(0.05)
            return True
        finally:
            worker.stop()
            await task

    return asyncio.run(run())


def settled(desk: Desk) -> bool:
    return all(r.state in (OutboxState.DONE, OutboxState.FAILED) for r in rows(desk.db))


def test_ekm_access_denied_in_one_channel_fails_that_row_instead_of_pausing_all_slack_delivery(
    desk: Desk, emulator: SlackEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Enterprise Key Management revoked for the customer's Slack Connect channel: Slack answers
    `ekm_access_denied` to posts there, while the token works (auth.test answers ok). That is a
    refusal of that post (like `restricted_action`), not a dead token: pausing all Slack delivery
    on it makes the worker pause, see auth.test work, resume, meet the same refusal and pause again,
    forever — the row never fails, nobody is told, and every other Slack row keeps stopping."""
    emulator.add_fault(
        "chat.postMessage", Fault.slack_error("ekm_access_denied"), channel=CONNECT, times=None
    )
    ticket_id = open_slack_ticket(desk, emulator, "VPN is down", channel=CONNECT)
    worker = slack_worker(desk, emulator)

    with caplog.at_level(logging.INFO, logger="bot.worker"):
        ended = run_worker_until(worker, lambda: settled(desk))

    pauses = sum(r.getMessage().startswith("Slack delivery paused") for r in caplog.records)
    ack = rows(desk.db, Kind.ORIGIN_ACK.value)
    assert ended, (
        f"the ack into {CONNECT} never settled: {[(r.state, r.attempts, r.last_error) for r in ack]}; "
        f"'Slack delivery paused' logged {pauses} times, auth.test asked "
        f"{len(emulator.calls_to('auth.test'))} times"
    )
    assert [r.state for r in ack] == [OutboxState.FAILED]
    assert pauses == 0
    # The triage thread is told once, and everything else went out once.
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.triage_ts
        triage_ts = ticket.triage_ts
    told = [m for m in thread(emulator, TRIAGE, triage_ts) if "couldn't post" in (m.text or "").lower()]
    assert len(told) == 1, [m.text for m in thread(emulator, TRIAGE, triage_ts)]
    assert all(count == 1 for count in posts_by_row(emulator).values())


def test_a_staff_reply_reaches_the_customer_when_users_info_refuses_the_lookup(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """users.info refuses for good (here `missing_scope`: users:read was dropped from the app) while
    the reply's author has no cached profile. The store knows the author's name, and posting works:
    the reply must still reach the customer's thread (under that name), not fail because its
    picture could not be looked up. The intake already works this way (`profile_or_standin`)."""
    ticket_id = open_slack_ticket(desk, emulator, "VPN is down", channel=CONNECT)
    emulator.add_fault("users.info", Fault.slack_error("missing_scope"), times=None)
    message_id = staff_reply(desk, ticket_id, "Try restarting it.")
    worker = slack_worker(desk, emulator)

    assert run_worker_until(worker, lambda: settled(desk))

    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        message = session.get(Message, message_id)
        assert ticket is not None and message is not None
        origin_ts, delivery = str(ticket.origin_thread_ts), message.delivery
    posts = origin_posts(desk)
    assert [(r.state, r.last_error) for r in posts] == [(OutboxState.DONE, None)]
    replies = [m for m in thread(emulator, CONNECT, origin_ts) if m.text == "Try restarting it."]
    assert [m.username for m in replies] == ["Alice Archer"]
    assert delivery == Delivery.DELIVERED
    assert len(emulator.calls_to("users.info")) >= 1  # it did ask


def origin_posts(desk: Desk) -> list[Any]:
    return rows(desk.db, Kind.ORIGIN_POST.value)


def test_a_note_whose_lock_reaction_slack_refuses_is_not_reported_as_a_failed_delivery(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """A note's :lock: marker refused by Slack (`too_many_reactions`, say) is not a delivery: the
    thread must not tell the staff member who just wrote an internal note that "a delivery failed"
    (it reads as if the note had been sent somewhere). It should say what could not be done."""
    ticket_id = open_email_ticket(desk)
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        triage_ts = str(ticket.triage_ts)
    note_ts = emulator.user_post(ALICE, TRIAGE, "note: the customer is a VIP", thread_ts=triage_ts)
    emulator.add_fault("reactions.add", Fault.slack_error("too_many_reactions"), times=None)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.add_note(
            session,
            ticket,
            author=STAFF,
            body_markdown="the customer is a VIP",
            slack_channel=TRIAGE,
            slack_ts=note_ts,
        )
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))

    reaction = rows(desk.db, Kind.REACTION.value)
    assert [r.state for r in reaction] == [OutboxState.FAILED]
    lines = [
        m.text for m in thread(emulator, TRIAGE, triage_ts) if m.bot_id and ":warning:" in (m.text or "")
    ]
    assert len(lines) == 1, lines
    assert "delivery failed" not in lines[0].lower(), lines[0]
    assert ":lock:" in lines[0], lines[0]


def test_resets_rate_limits_and_failed_lookups_together_post_every_part_and_file_once(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """Held before these fixes too: multi-part posts, files, staff replies under their
    name in both customer channels, with posts and shares whose answer is lost, lookups that fail
    or are rate limited, and 429s. Counted in the emulator: every (row, part) once, every file once."""
    long_body = "\n\n".join(f"Paragraph {n}: " + "words " * 400 for n in range(30))  # several posts
    for n in range(4):
        open_email_ticket(
            desk,
            subject=f"Mail {n}",
            body=long_body if n % 2 == 0 else f"short {n}",
            attachments=[(f"mail-{n}.txt", f"file {n}".encode())],
        )
    for n, channel in enumerate([CONNECT, HELP, CONNECT, HELP]):
        ticket_id = open_slack_ticket(
            desk, emulator, f"Slack {n}", channel=channel, user="U0EXTDAN" if channel == CONNECT else CAROL
        )
        staff_reply(desk, ticket_id, f"Reply {n}", attachments=[(f"reply-{n}.txt", f"reply {n}".encode())])
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect(), channel=TRIAGE, times=4)
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect(), channel=CONNECT, times=2)
    emulator.add_fault("chat.postMessage", Fault.ratelimited(1), channel=HELP, times=2)
    emulator.add_fault("files.completeUploadExternal", Fault.reset_after_effect(), times=2)
    emulator.add_fault("conversations.replies", Fault.server_error(503), times=2)
    emulator.add_fault("conversations.history", Fault.ratelimited(1), times=1)

    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk), timeout=90)

    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    assert (duplicates, losses) == (0, 0)
    assert {r.state for r in rows(desk.db)} == {OutboxState.DONE}
    shared: Counter[str] = Counter()
    with emulator.state.lock:
        for messages in emulator.state.messages.values():
            for message in messages.values():
                if not message.deleted:
                    shared.update(emulator.files[f].name for f in message.files)
    assert sorted(shared) == sorted(
        [f"mail-{n}.txt" for n in range(4)] + [f"reply-{n}.txt" for n in range(4)]
    )
    assert set(shared.values()) == {1}, shared
    assert not emulator.faults.rules() or all(r.remaining is None for r in emulator.faults.rules())


def test_a_pause_outlives_a_restart_and_a_new_worker_resumes_once_the_token_works(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """Held before these fixes too: token revoked -> paused (rows kept, none failed);
    the process stops; the operator installs a new token and restarts: the new worker reads the
    pause from the store, asks auth.test, resumes and delivers every row once."""
    from store.service_state import slack_paused

    open_email_ticket(desk)
    open_slack_ticket(desk, emulator, "VPN is down", channel=CONNECT)
    emulator.add_fault("*", Fault.slack_error("token_revoked"), times=None)
    assert run_worker_until(slack_worker(desk, emulator), lambda: slack_paused(desk.db) is not None)
    assert all(r.state == OutboxState.PENDING for r in rows(desk.db))
    assert sum(posts_by_row(emulator).values()) == 0

    emulator.clear_faults()  # the new token works
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))
    assert slack_paused(desk.db) is None
    assert {r.state for r in rows(desk.db)} == {OutboxState.DONE}
    assert duplicates_and_losses(desk.db, emulator) == (0, 0)


def test_a_reply_whose_files_slack_refuses_does_not_say_the_reply_was_not_posted(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """A staff reply with a file into a Slack Connect thread: its text is posted, then Slack refuses
    to share the file there (`restricted_action`: the other organisation does not allow files from
    apps). The customer has the text. The triage thread must not say the reply "couldn't post" as
    if nothing reached them (staff would send it again: a duplicate for the customer); it must say
    the files did not go."""
    ticket_id = open_slack_ticket(desk, emulator, "VPN is down", channel=CONNECT)
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))
    emulator.add_fault("files.completeUploadExternal", Fault.slack_error("restricted_action"), times=None)
    staff_reply(desk, ticket_id, "Here are the steps.", attachments=[("steps.txt", b"1. off\n2. on\n")])
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))

    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        origin_ts, triage_ts = str(ticket.origin_thread_ts), str(ticket.triage_ts)
    customer_sees = [m.text for m in thread(emulator, CONNECT, origin_ts)]
    assert "Here are the steps." in customer_sees  # the text did reach the customer
    told = [m.text for m in thread(emulator, TRIAGE, triage_ts) if ":warning:" in (m.text or "")]
    assert len(told) == 1, told
    assert "couldn't post in the customer's slack thread" not in told[0].lower(), told[0]
    assert "steps.txt" in told[0] or "file" in told[0].lower(), told[0]


def test_a_triage_channel_renamed_and_made_private_still_gets_every_post_once(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """Held before these fixes too: the triage channel is renamed and converted to a
    private channel (its ID stays); posts whose answer is lost are looked up there (history of a
    private channel) and not posted twice."""
    triage = emulator.workspace.channels[TRIAGE]
    triage.name = "support-triage-renamed"
    triage.is_private = True
    for n in range(3):
        open_email_ticket(desk, subject=f"Mail {n}", body=f"body {n}")
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect(), channel=TRIAGE, times=4)
    assert run_worker_until(slack_worker(desk, emulator), lambda: settled(desk))
    assert {r.state for r in rows(desk.db)} == {OutboxState.DONE}
    assert duplicates_and_losses(desk.db, emulator) == (0, 0)
    assert not emulator.faults.rules()
