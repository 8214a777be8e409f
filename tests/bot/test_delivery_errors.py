"""What each kind of Slack failure becomes, and delivery that stays effectively once through them.

Faults are injected by the emulator into real HTTP answers: 429 with Retry-After, 5xx pages, hung
requests, connections dropped before or after the call took effect, and Slack error codes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select, update

from bot.app import slack_session
from bot.delivery import SlackDelivery
from bot.outcomes import Done, Fail, Outcome, Pause, Retry
from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, CAROL, CONNECT, HELP, TRIAGE
from store import actions, outbox
from store.context import Desk
from store.models import Attachment, Outbox, Ticket, utcnow
from store.outbox import Kind
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    client_for,
    desk_fixture,
    desk_for,
    drain,
    emulator_fixture,
    open_email_ticket,
    open_slack_ticket,
    posts_by_row,
    rows,
    run_until_drained,
    thread,
    worker_for,
)


def first_card_outcome(desk: Desk, emulator: SlackEmulator, *, timeout: int = 15) -> Outcome:
    """Open a ticket and perform its card row once; the outcome the worker would settle."""
    open_email_ticket(desk)
    delivery = SlackDelivery(desk, client_for(emulator, timeout=timeout))
    (item,) = outbox.claim_due(desk.db, "test-worker", kinds=frozenset({Kind.CARD.value}))
    return asyncio.run(delivery.performers()[Kind.CARD.value](item))


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive", "not_authed"])
def test_a_dead_token_pauses(desk: Desk, emulator: SlackEmulator, error: str) -> None:
    emulator.add_fault("chat.postMessage", Fault.slack_error(error))
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Pause) and error in outcome.error


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("msg_too_long", "too long"),
        ("invalid_blocks", "invalid_blocks"),
        ("some_new_refusal", "some_new_refusal"),
    ],
)
def test_a_refusal_fails_the_row_with_a_reason(
    desk: Desk,
    emulator: SlackEmulator,
    error: str,
    words: str,
) -> None:
    emulator.add_fault("chat.postMessage", Fault.slack_error(error))
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Fail) and words in outcome.error


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("channel_not_found", "no longer exists"),
        ("not_in_channel", "not a member"),
        ("is_archived", "archived"),
    ],
)
def test_a_card_the_triage_channel_refuses_as_a_channel_is_kept_for_when_it_is_fixed(
    desk: Desk,
    emulator: SlackEmulator,
    error: str,
    words: str,
) -> None:
    """Failed, the new ticket stayed invisible to staff once the channel was fixed."""
    emulator.add_fault("chat.postMessage", Fault.slack_error(error))
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Retry) and not outcome.count_attempt
    assert outcome.error.startswith(outbox.TRIAGE_UNREACHABLE) and words in outcome.error
    assert outcome.delay is not None and outcome.delay <= outbox.TRIAGE_RECHECK_MIN


@pytest.mark.parametrize(
    "fault",
    [
        Fault.server_error(500),
        Fault.server_error(503),
        Fault.reset_before_effect(),
        Fault.slack_error("internal_error"),
    ],
    ids=["500", "503", "reset", "internal_error"],
)
def test_server_trouble_retries_and_counts_the_attempt(
    desk: Desk,
    emulator: SlackEmulator,
    fault: Fault,
) -> None:
    emulator.add_fault("chat.postMessage", fault)
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Retry) and outcome.count_attempt and outcome.delay is None


def test_a_request_that_never_answers_is_retried(desk: Desk, emulator: SlackEmulator) -> None:
    emulator.add_fault("chat.postMessage", Fault.hang(3))
    outcome = first_card_outcome(desk, emulator, timeout=1)
    assert isinstance(outcome, Retry) and "no answer" in outcome.error
    assert outcome.at_least == timedelta(seconds=3)  # three call timeouts: a late effect lands first


def test_timed_out_posts_come_back_apart_and_later_each_time_never_before_the_late_effect(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """Every timed-out Slack call came back exactly three call timeouts (45 s) later: a burst of
    timeouts (Slack slow for a moment) returned as one burst, and a call timing out again and
    again never waited longer, while retries are meant to back off exponentially with jitter. The
    wait for the call's late effect stays the floor: the next attempt must find a post that landed
    late rather than post it twice."""
    from freezegun import freeze_time

    from bot.worker_settle import settle

    emulator.add_fault("chat.postMessage", Fault.hang(2), times=None)
    # A retry first looks for a post that landed late: Slack is slow for that look too.
    emulator.add_fault("conversations.history", Fault.hang(2), times=None)
    for n in range(6):
        open_email_ticket(desk, subject=f"Printer {n}")
    delivery = SlackDelivery(desk, client_for(emulator, timeout=1))
    perform = delivery.performers()[Kind.CARD.value]
    late_effect = timedelta(seconds=3)
    waits: dict[int, list[timedelta]] = {}

    async def perform_all(items: list[outbox.OutboxItem]) -> list[Outcome]:
        return list(await asyncio.gather(*(perform(item) for item in items)))

    for _round in range(3):
        with desk.db.transaction() as session:  # every row due again (the waits are what is measured)
            session.execute(update(Outbox).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        items = outbox.claim_due(desk.db, "w1", kinds=frozenset({Kind.CARD.value}))
        assert len(items) == 6
        outcomes = asyncio.run(perform_all(items))  # real time: the calls time out
        with freeze_time(utcnow()) as clock:  # settled at one instant: the waits compare exactly
            for item, outcome in zip(items, outcomes, strict=True):
                assert settle(desk.db, "w1", item, outcome) == "pending"
            now = utcnow()
        for row in rows(desk.db, Kind.CARD.value):
            assert row.next_attempt_at is not None
            waits.setdefault(row.id, []).append(row.next_attempt_at - now)
        del clock
    for history in waits.values():
        assert all(wait > late_effect for wait in history), history
        assert history[0] < history[1] < history[2], history  # longer each time
    first_waits = {history[0] for history in waits.values()}
    assert len(first_waits) == len(waits)  # jittered: the burst comes back spread out


def test_a_post_that_times_out_but_takes_effect_late_is_posted_once(
    desk: Desk, emulator: SlackEmulator
) -> None:
    # Slack carries the call out after the client stopped waiting; the retry looks only after that.
    open_email_ticket(desk)
    # Past the 1 s timeout and the first backoff (at most 2 s), within the wait (3 s).
    emulator.add_fault("chat.postMessage", Fault.hang(3.2))
    run_until_drained(
        worker_for(desk, SlackDelivery(desk, client_for(emulator, timeout=1)).performers()), desk.db
    )
    time.sleep(1.5)  # whatever was still in flight has landed (the hung call, 3.2 s after it began)
    assert len(emulator.calls_to("chat.postMessage")) == 2  # the card (late) and the customer's message
    assert set(posts_by_row(emulator).values()) == {1}


def test_a_request_that_never_answers_is_retried_over_the_shared_connections(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """The service's pool of kept-alive connections carries the call timeout: slack_sdk applies its
    own only to the sessions it opens itself."""
    open_email_ticket(desk)
    emulator.add_fault("chat.postMessage", Fault.hang(3))
    (item,) = outbox.claim_due(desk.db, "test-worker", kinds=frozenset({Kind.CARD.value}))

    async def perform() -> Outcome:
        async with slack_session(timeout=1) as session:
            client = AsyncWebClient(
                token=BOT_TOKEN, base_url=emulator.api_url, retry_handlers=[], session=session
            )
            return await SlackDelivery(desk, client).performers()[Kind.CARD.value](item)

    outcome = asyncio.run(perform())
    assert isinstance(outcome, Retry) and "no answer" in outcome.error


def test_429_defers_by_retry_after_without_counting_an_attempt(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=30))
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Retry) and not outcome.count_attempt
    assert outcome.delay is not None and outcome.delay >= timedelta(seconds=25)


def test_a_post_whose_answer_was_lost_is_found_not_posted_twice(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    ticket_id = open_email_ticket(desk)
    # The card is posted, then the connection drops before the answer: the outcome is unknown.
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect())
    delivery = SlackDelivery(desk, client_for(emulator))
    drain(worker_for(desk, delivery.performers()), desk.db)

    cards = [m for m in emulator.messages(TRIAGE) if not m.is_reply]
    assert len(cards) == 1
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.triage_ts == cards[0].ts
    assert len(emulator.calls_to("conversations.history")) == 1  # the retry looked first
    # The card (its answer lost) and the customer's message: the card was not posted again.
    assert len(emulator.calls_to("chat.postMessage", channel=TRIAGE)) == 2
    assert max(posts_by_row(emulator).values()) == 1


def test_a_thread_post_part_whose_answer_was_lost_is_not_repeated(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    body = "\n\n".join(f"Paragraph {n}: " + "word " * 400 for n in range(20))
    ticket_id = open_email_ticket(desk, body=body)
    delivery = SlackDelivery(desk, client_for(emulator))
    worker = worker_for(desk, delivery.performers())
    asyncio.run(worker.run_once())  # the card
    # The first part of the long message takes effect and its answer is lost; the retry must
    # find it in the thread and go on with the second part.
    calls_before = len(emulator.calls_to("chat.postMessage"))
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect())
    drain(worker, desk.db)

    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        card_ts = str(ticket.triage_ts)
    replies = thread(emulator, TRIAGE, card_ts)[1:]
    counts = posts_by_row(emulator)
    post_row = rows(desk.db, Kind.THREAD_POST)[0].id
    parts = sorted(part for (row, part) in counts if row == post_row)
    assert parts == list(range(len(replies))) and all(counts[(post_row, part)] == 1 for part in parts)
    # One call per part: the part whose answer was lost was found, not posted again.
    assert len(emulator.calls_to("chat.postMessage")) - calls_before == len(replies)
    assert len(emulator.calls_to("conversations.replies")) == 1


def test_an_upload_whose_share_answer_was_lost_is_not_shared_twice(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    ticket_id = open_email_ticket(desk, attachments=[("report.pdf", b"%PDF-1.7 report")])
    emulator.add_fault("files.completeUploadExternal", Fault.reset_after_effect())
    delivery = SlackDelivery(desk, client_for(emulator))
    drain(worker_for(desk, delivery.performers()), desk.db)

    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        card_ts = str(ticket.triage_ts)
        (attachment,) = session.query(Attachment).all()
    shares = [m for m in thread(emulator, TRIAGE, card_ts) if m.files]
    assert len(shares) == 1 and shares[0].files == [attachment.slack_file_id]
    assert len(emulator.calls_to("files.getUploadURLExternal")) == 1  # the file id was kept
    assert len(emulator.calls_to("files.info")) == 1  # and checked before sharing again


def test_an_upload_cut_off_before_sharing_is_completed_not_restarted(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    open_email_ticket(desk, attachments=[("report.pdf", b"%PDF-1.7 report")])
    emulator.add_fault("files.completeUploadExternal", Fault.server_error(503))
    delivery = SlackDelivery(desk, client_for(emulator))
    drain(worker_for(desk, delivery.performers()), desk.db)
    shared = [f for f in emulator.files.values() if f.completed]
    assert len(shared) == 1 and shared[0].content == b"%PDF-1.7 report"
    assert len(emulator.calls_to("files.getUploadURLExternal")) == 1


def test_429_in_one_channel_does_not_hold_back_another(
    desk: Desk,
    emulator: SlackEmulator,
) -> None:
    sick = open_slack_ticket(desk, emulator, "Sick channel", channel=CONNECT)
    healthy = [open_slack_ticket(desk, emulator, f"Healthy {n}", channel=HELP, user=CAROL) for n in range(4)]
    emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=2), channel=CONNECT)
    delivery = SlackDelivery(desk, client_for(emulator))
    run_until_drained(worker_for(desk, delivery.performers()), desk.db)

    sick_calls = emulator.calls_to("chat.postMessage", channel=CONNECT)
    assert [call.status for call in sick_calls] == [429, 200]  # nothing more until Retry-After passed
    healthy_posts = [c for c in emulator.calls_to("chat.postMessage", channel=HELP) if c.ok]
    assert len(healthy_posts) == len(healthy)  # each customer's acknowledgement, once
    # Every healthy post went out while the sick channel was still waiting for its retry.
    assert max(call.time for call in healthy_posts) < sick_calls[1].time
    assert sick and max(posts_by_row(emulator).values()) == 1


def test_a_done_outcome_is_what_the_store_records() -> None:
    assert Done().result == {} and Done().apply is None


def test_a_customer_message_slack_refuses_is_told_in_its_thread(desk: Desk, emulator: SlackEmulator) -> None:
    # The thread is up; Slack then refuses one message's copy (not the thread): the team hears of it.
    ticket_id = open_email_ticket(desk)
    performers = SlackDelivery(desk, client_for(emulator)).performers()
    run_until_drained(worker_for(desk, performers), desk.db)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.triage_ts and ticket.requester is not None
        card_ts = ticket.triage_ts
        actions.add_customer_message(
            session, desk.policy, ticket, customer=ticket.requester, body_markdown="Any news?", source="email"
        )
    emulator.add_fault("chat.postMessage", Fault.slack_error("invalid_blocks"), channel=TRIAGE)
    run_until_drained(worker_for(desk, performers), desk.db)
    last = thread(emulator, TRIAGE, card_ts)[-1]
    assert last.text.startswith(":warning: A message of this ticket could not be shown here:")
    assert "invalid_blocks" in last.text and last.text.endswith("The ticket keeps it.")
    assert [row.state for row in rows(desk.db, Kind.THREAD_POST.value)] == ["done", "failed"]


def test_a_card_update_held_back_by_a_429_does_not_hold_back_its_thread(
    desk: Desk, emulator: SlackEmulator
) -> None:
    # chat.update is limited on its own: the thread's posts (chat.postMessage) keep flowing.
    ticket_id = open_email_ticket(desk)
    performers = SlackDelivery(desk, client_for(emulator)).performers()
    run_until_drained(worker_for(desk, performers), desk.db)
    emulator.add_fault("chat.update", Fault.ratelimited(retry_after=2))
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_priority(session, ticket, "urgent", actions.Actor("alice", slack_id="U0ALICE"))
    run_until_drained(worker_for(desk, performers), desk.db)
    calls = [
        (call.method, call.error)
        for call in emulator.calls
        if call.method in ("chat.update", "chat.postMessage")
    ]
    assert ("chat.update", "ratelimited") in calls
    # The thread's line is posted before the card's update goes through, not after it.
    assert calls[-1] == ("chat.update", None)
    assert calls.count(("chat.postMessage", None)) == 3  # the card, the customer's message, the line


def test_a_refused_card_holds_its_thread_posts_until_the_operator_sends_it_again(
    desk: Desk, emulator: SlackEmulator
) -> None:
    """The customer's message has no thread while its card is refused: it waits for the card,
    not failing with it, and goes right after the card once that is sent again."""
    open_email_ticket(desk)  # its card, then the customer's mail into the card's thread
    emulator.add_fault("chat.postMessage", Fault.slack_error("invalid_blocks"), channel=TRIAGE, times=1)
    worker = worker_for(desk, SlackDelivery(desk, client_for(emulator)).performers())

    def settled_behind_the_refused_card() -> bool:
        states = {row.kind: (row.state, row.last_error) for row in rows(desk.db)}
        return states.get(Kind.CARD.value, ("",))[0] == "failed" and states.get(Kind.THREAD_POST.value) == (
            "pending",
            outbox.WAITING_FOR_CARD,
        )

    async def until_waiting() -> None:
        deadline = time.monotonic() + 15
        while not await asyncio.to_thread(settled_behind_the_refused_card):
            assert time.monotonic() < deadline, [(r.kind, r.state, r.last_error) for r in rows(desk.db)]
            if not await worker.run_once():
                await asyncio.sleep(0.05)

    asyncio.run(until_waiting())
    [card] = rows(desk.db, Kind.CARD.value)
    [waiting] = rows(desk.db, Kind.THREAD_POST.value)
    assert waiting.attempts == 0  # a wait for the card, not a failed attempt
    assert outbox.retry_failed(desk.db, card.id)
    drain(worker, desk.db, timeout=10)  # well within the minute of its recheck
    with desk.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        card_ts = ticket.triage_ts
    assert card_ts is not None and len(thread(emulator, TRIAGE, card_ts)) == 2  # the card, then the mail
    assert [row.state for row in rows(desk.db, Kind.THREAD_POST.value)] == ["done"]


def test_a_post_for_a_thread_left_in_an_old_archived_triage_channel_fails_rather_than_waiting_forever(
    desk: Desk, emulator: SlackEmulator, database_url: str, tmp_path: Path
) -> None:
    """The team moved to a new triage channel (SERVICEDESK_TRIAGE_CHANNEL changed) and archived the
    old one, where older tickets' threads stay. A post for such a thread is not kept for the
    configured channel to be fixed (it never will be, and /healthz would say it is unreachable
    forever): it fails as any refusal does."""
    ticket_id = open_email_ticket(desk)
    run_until_drained(worker_for(desk, SlackDelivery(desk, client_for(emulator)).performers()), desk.db)
    emulator.workspace.channels[TRIAGE].is_archived = True
    moved = desk_for(database_url, emulator, tmp_path / "files", triage_channel=HELP)
    with moved.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.triage_channel == TRIAGE and ticket.requester is not None
        actions.add_customer_message(
            session,
            moved.policy,
            ticket,
            customer=ticket.requester,
            body_markdown="Any news?",
            source="email",
        )
    delivery = SlackDelivery(moved, client_for(emulator))
    (item,) = outbox.claim_due(moved.db, "test-worker", kinds=frozenset({Kind.THREAD_POST.value}))
    outcome = asyncio.run(delivery.performers()[Kind.THREAD_POST.value](item))
    assert isinstance(outcome, Fail) and "archived" in outcome.error
    assert outbox.waiting_for_triage(moved.db).total == 0


def test_a_card_kept_while_the_triage_channel_was_archived_goes_to_the_channel_configured_since(
    desk: Desk, emulator: SlackEmulator, database_url: str, tmp_path: Path
) -> None:
    """Its card kept because the triage channel was archived, the team sets another channel
    (SERVICEDESK_TRIAGE_CHANNEL): the card kept trying the archived one, for ever."""
    emulator.workspace.channels[TRIAGE].is_archived = True
    outcome = first_card_outcome(desk, emulator)
    assert isinstance(outcome, Retry) and not outcome.count_attempt
    moved = desk_for(database_url, emulator, tmp_path / "files", triage_channel=HELP)
    with moved.db.transaction() as session:
        session.execute(update(Outbox).values(state="pending", claimed_by=None, next_attempt_at=utcnow()))
    run_until_drained(worker_for(moved, SlackDelivery(moved, client_for(emulator)).performers()), moved.db)
    with moved.db.read() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.triage_channel == HELP and ticket.triage_ts
    assert [r.state for r in rows(moved.db, Kind.THREAD_POST.value)] == ["done"]
    assert thread(emulator, HELP, ticket.triage_ts)  # the customer's mail followed the card there
