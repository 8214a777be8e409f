"""The Slack side end to end: people act in the emulator, signed events reach the running service
over HTTP (or Socket Mode), the worker files tickets and delivers, and the results are read back
from the emulator's channels and threads.

Replies wait SERVICEDESK_REPLY_DELAY_SECONDS before they go out; the tests use a short real delay
and wait on conditions, never on the clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from bot.manifest import BOT_SCOPES
from bot.operator import retry_outbox
from sandbox import MailSink, RequestSender, SlackEmulator
from sandbox.faults import Fault
from sandbox.mail_sink import ReceivedMail
from sandbox.state import Message as SlackMessage
from sandbox.workspace import (
    ALICE,
    BOB,
    BOT_TOKEN,
    BOT_USER,
    CAROL,
    CONNECT,
    DAN,
    EMPTY,
    ERIN,
    HELP,
    SIGNING_SECRET,
    TRIAGE,
    avatar_url,
)
from store.db import Database
from store.models import (
    Customer,
    Delivery,
    InboundItem,
    Message,
    Outbox,
    OutboxState,
    Ticket,
    Visibility,
    utcnow,
)
from store.outbox import Kind
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService, message_text, wait_until

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")

# Long enough that an edit or deletion made right after a reply lands inside it on a busy machine.
REPLY_DELAY = 3.0


@dataclass
class Desk:
    """The shared RunningDesk, with what the Slack stories look at: any channel's threads, the
    store's view of a Slack message, and "everything settled"."""

    service: RunningDesk

    @property
    def emulator(self) -> SlackEmulator:
        return self.service.emulator

    @property
    def sink(self) -> MailSink:
        return self.service.sink

    @property
    def db(self) -> Database:
        return self.service.db

    @property
    def url(self) -> str:
        return f"{self.service.http_url}/slack/events"

    def wait(self, condition: Callable[[], T | None], what: str = "a condition") -> T:
        return self.service.wait_for(condition, what)

    def ticket(self, number: int = 1) -> Ticket | None:
        with self.db.transaction() as session:
            return session.scalar(select(Ticket).where(Ticket.number == number))

    def ticket_count(self) -> int:
        with self.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(Ticket)) or 0)

    def message_at(self, channel: str, ts: str) -> Message | None:
        with self.db.transaction() as session:
            return session.scalar(
                select(Message).where(Message.slack_channel == channel, Message.slack_ts == ts)
            )

    def card_ts(self, number: int = 1) -> str:
        return self.wait(
            lambda: ((t := self.ticket(number)) is not None and t.triage_ts) or None, f"the card of #{number}"
        )

    def thread(self, channel: str, ts: str) -> list[SlackMessage]:
        """The replies of a thread, without its parent, deleted ones left out."""
        return [m for m in self.emulator.messages(channel, ts)[1:] if not m.deleted]

    def wait_thread_text(self, channel: str, ts: str, text: str) -> SlackMessage:
        return self.wait(
            lambda: next((m for m in self.thread(channel, ts) if text in m.text), None),
            f"{text!r} in the thread {channel}/{ts}",
        )

    def reactions(self, channel: str, ts: str) -> dict[str, list[str]]:
        message = self.emulator.message(channel, ts)
        return message.reactions if message is not None else {}

    def idle(self) -> None:
        """Every stored event handled and every delivery the emulator started answered."""

        seen: list[str] = [""]

        def settled() -> bool:
            # Deliveries first: once none is pending every event sent is stored, so the count
            # that follows sees it (the other order misses one stored between the two looks).
            if self.emulator.pending:
                unanswered = [d for d in self.emulator.deliveries if not d.done]
                seen[0] = "deliveries not answered: " + "; ".join(
                    f"{d.event_id or d.kind} after {[(a.status, a.error) for a in d.attempts]}"
                    for d in unanswered
                )
                return False
            with self.db.transaction() as session:
                waiting = session.execute(
                    select(InboundItem.id, InboundItem.kind, InboundItem.state, InboundItem.attempts).where(
                        InboundItem.state.in_(["pending", "claimed"])
                    )
                ).all()
            seen[0] = f"intake items still waiting: {[tuple(row) for row in waiting]}"
            return not waiting

        try:
            self.wait(settled, "the intake to settle")
        except pytest.fail.Exception:
            pytest.fail(f"timed out waiting for the intake to settle; {seen[0]}")


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY))


@pytest.fixture
def socket_desk(start_service: StartService) -> Desk:
    return Desk(
        start_service(socket_mode=True, intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY)
    )


def open_ticket(desk: Desk, text: str = "Printer is *on fire*") -> tuple[str, str]:
    """Dan asks in the Slack Connect channel; returns (customer thread ts, triage card ts)."""
    ts = desk.emulator.user_post(DAN, CONNECT, text)
    desk.wait_thread_text(CONNECT, ts, "Ticket #1 opened")
    return ts, desk.card_ts(1)


def reply_state(desk: Desk, ts: str) -> tuple[str | None, str] | None:
    message = desk.message_at(TRIAGE, ts)
    return (message.delivery, message.visibility) if message is not None else None


def delivered_marker(desk: Desk, customer_ts: str, card_ts: str) -> None:
    """A later public reply reaching the customer shows everything before it was settled."""
    desk.emulator.user_post(ALICE, TRIAGE, "Marker reply", thread_ts=card_ts)
    desk.wait_thread_text(CONNECT, customer_ts, "Marker reply")
    desk.idle()


def customer_sees(desk: Desk, customer_ts: str) -> list[str]:
    return [m.text for m in desk.thread(CONNECT, customer_ts)]


# ----- the main story -----


def test_slack_connect_request_to_staff_reply_in_the_customers_thread(desk: Desk) -> None:
    customer_ts = desk.emulator.user_post(DAN, CONNECT, "Printer is *on fire*")
    ack = desk.wait_thread_text(CONNECT, customer_ts, "Ticket #1 opened")
    assert ack.user == BOT_USER
    card_ts = desk.card_ts(1)
    assert [m.ts for m in desk.emulator.messages(TRIAGE)] == [card_ts]
    desk.wait_thread_text(TRIAGE, card_ts, "on fire")

    typed_table = "Setting | Value\n--- | ---\nPower | off"  # typed as text: no table, no line lost
    reply_ts = desk.emulator.user_post(
        ALICE,
        TRIAGE,
        f"<@{DAN}> try *turning it off* and on (<@{BOB}> saw `@dan` in the logs, as in "
        f"<https://www.youtube.com/@dan> and <https://videos.acme.test/@dan|this one>)\n{typed_table}",
        thread_ts=card_ts,
    )
    posted = desk.wait_thread_text(CONNECT, customer_ts, "turning it off")
    # Dan, who wrote in this channel, is mentioned for real; Bob (staff) stays a name, and so does
    # what is quoted as code, or part of a link (a mention there broke the link).
    [section] = [block["text"]["text"] for block in posted.blocks or [] if block["type"] == "section"]
    expected = (
        f"<@{DAN}> try *turning it off* and on (@Bob Baker saw `@dan` in the logs, as in "
        f"<https://www.youtube.com/@dan> and <https://videos.acme.test/@dan|this one>)\n{typed_table}"
    )
    assert section == expected
    assert posted.username == "alice"
    assert posted.icon_url == avatar_url(ALICE, 192)
    desk.wait(lambda: "white_check_mark" in desk.reactions(TRIAGE, reply_ts), "the delivered receipt")
    assert desk.wait(lambda: reply_state(desk, reply_ts)) == (Delivery.DELIVERED, Visibility.PUBLIC)

    # Dan answers in his thread: added to the ticket and mirrored for the team.
    desk.emulator.user_post(DAN, CONNECT, "That worked, thanks!", thread_ts=customer_ts)
    desk.wait_thread_text(TRIAGE, card_ts, "That worked")
    desk.idle()
    # Our own posts (card, acknowledgement, mirrors, the reply) opened nothing.
    assert desk.ticket_count() == 1


def test_a_staff_name_that_begins_with_a_customers_name_is_no_mention_of_the_customer(desk: Desk) -> None:
    """Dan goes by "Bob" in Slack; staff's reply names him and Bob Baker (staff). In Dan's thread
    `@Bob Baker` became a mention of Dan followed by "Baker": Dan was notified of a line about
    someone else. Only `@Bob` is Dan now."""
    desk.emulator.workspace.users[DAN].display_name = "Bob"
    customer_ts, card_ts = open_ticket(desk)
    desk.emulator.user_post(ALICE, TRIAGE, f"<@{DAN}>, <@{BOB}> is on it.", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "is on it")
    [section] = [block["text"]["text"] for block in posted.blocks or [] if block["type"] == "section"]
    assert section == f"<@{DAN}>, @Bob Baker is on it."


def test_a_slack_connect_file_reaches_the_triage_thread_through_a_rate_limit(desk: Desk) -> None:
    # Dan's organization is not ours: his file arrives as a stub that files.info fills in.
    customer_ts, card_ts = open_ticket(desk)
    desk.emulator.add_fault("files.info", Fault.ratelimited(retry_after=3), times=1)
    desk.emulator.user_post(
        DAN, CONNECT, "Screenshot attached", thread_ts=customer_ts, files=[("shot.png", b"\x89PNG fake")]
    )
    desk.wait_thread_text(TRIAGE, card_ts, "Screenshot attached")
    copied = desk.wait(
        lambda: [f for f in desk.emulator.files.values() if f.name == "shot.png" and TRIAGE in f.shares],
        "the file in the triage thread",
    )
    assert [f.content for f in copied] == [b"\x89PNG fake"]
    refused, answered = desk.emulator.calls_to("files.info")
    assert answered.time - refused.time >= 3  # as long as the 429's Retry-After asked


def test_staff_and_an_external_user_are_told_apart(desk: Desk) -> None:
    desk.emulator.user_post(ALICE, CONNECT, "Good morning, Globex!")
    desk.emulator.user_post(DAN, CONNECT, "Morning! The printer is broken")
    desk.card_ts(1)
    desk.idle()
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.subject == "Morning! The printer is broken"
    assert desk.ticket_count() == 1


def _mail(sender: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, SUPPORT, subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(f"{subject}.")
    return message.as_bytes()


def test_a_slack_connect_team_and_its_mail_domain_are_one_organization(desk: Desk) -> None:
    # Dan wrote by email first: his organization is his mail domain. Erin, whose email Globex
    # hides, is known only by her Slack team, until Dan writes in the shared channel too.
    dan = "dan@globex.example"
    assert desk.service.send_mail(_mail(dan, "By mail"), mail_from=dan)[0] == 250
    desk.card_ts(1)
    desk.emulator.user_post(ERIN, CONNECT, "Same here")
    erin_card = desk.card_ts(2)
    desk.emulator.user_post(DAN, CONNECT, "Now in Slack")
    desk.card_ts(3)
    # Erin's card, drawn while her team was all the desk knew, is drawn again with the name.
    desk.wait(
        lambda: "· globex.example" in message_text(desk.emulator.message(TRIAGE, erin_card)) or None,
        "Erin's card naming her organization",
    )
    with desk.db.transaction() as session:
        organizations = {
            customer.name: (customer.organization_id, customer.organization and customer.organization.name)
            for customer in session.scalars(select(Customer))
        }
    assert organizations["Erin Eames"] == organizations["Dan Dorsey"] == (1, "globex.example")


def test_a_note_never_leaves(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    note_ts = desk.emulator.user_post(BOB, TRIAGE, "note: they are a VIP, be quick", thread_ts=card_ts)
    desk.wait(lambda: "lock" in desk.reactions(TRIAGE, note_ts), "the note marker")
    delivered_marker(desk, customer_ts, card_ts)
    assert not any("VIP" in text for text in customer_sees(desk, customer_ts))
    assert desk.sink.messages == []


def test_the_desks_own_reactions_are_answered_but_not_stored(desk: Desk) -> None:
    """Slack sends the desk its own receipt reactions (here the note's lock) as events too."""
    _customer_ts, card_ts = open_ticket(desk)
    note_ts = desk.emulator.user_post(BOB, TRIAGE, "note: VIP", thread_ts=card_ts)

    def lock_event_answered() -> bool:
        return any(
            d.done and d.ok and (d.payload.get("event") or {}).get("reaction") == "lock"
            for d in desk.emulator.deliveries
            if d.kind == "event" and isinstance(d.payload, dict)
        )

    desk.wait(lock_event_answered, "the lock reaction's event to be answered")
    with desk.db.read() as session:
        stored = [item.payload.get("event", {}) for item in session.scalars(select(InboundItem))]
    assert [event for event in stored if event.get("type") == "reaction_added"] == []
    assert "lock" in desk.reactions(TRIAGE, note_ts)


def test_deleting_a_reply_inside_the_delay_cancels_it(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Wrong answer", thread_ts=card_ts)
    desk.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    desk.idle()
    # Cancelled; or, when the deletion's event overtook the message's, never taken in at all.
    assert reply_state(desk, reply_ts) in (None, (Delivery.CANCELLED, Visibility.PUBLIC))
    delivered_marker(desk, customer_ts, card_ts)
    assert "Wrong answer" not in customer_sees(desk, customer_ts)


def test_editing_a_reply_inside_the_delay_changes_what_is_sent(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Try the red button", thread_ts=card_ts)
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "Try the *green* button")
    desk.wait_thread_text(CONNECT, customer_ts, "green")
    desk.idle()
    assert not any("red" in text for text in customer_sees(desk, customer_ts))


def test_an_edit_adding_note_makes_the_reply_a_note(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Their contract ends soon", thread_ts=card_ts)
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "note: their contract ends soon")
    desk.wait(lambda: (state := reply_state(desk, reply_ts)) and state[1] == Visibility.INTERNAL)
    desk.wait(lambda: "lock" in desk.reactions(TRIAGE, reply_ts), "the note marker")
    delivered_marker(desk, customer_ts, card_ts)
    assert not any("contract" in text for text in customer_sees(desk, customer_ts))


def test_edits_and_deletions_after_delivery_are_mirrored(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Version one", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "Version one")
    desk.wait(lambda: reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC))
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, f"Version two, <@{DAN}>")
    desk.wait(lambda: "Version two" in desk.emulator.message(CONNECT, posted.ts).text or None)
    edited = desk.emulator.message(CONNECT, posted.ts)
    assert f"<@{DAN}>" in str(edited.blocks)  # the customer stays mentioned in the edited copy
    desk.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    desk.wait(lambda: desk.emulator.message(CONNECT, posted.ts).deleted or None)


BOSS = "boss@globex.example"


def retry_the_failed_customer_thread_post(desk: Desk) -> int:
    """Invite the bot back into the customer's channel and send the one failed post into the
    customer's thread again, as an operator does (`servicedesk outbox --retry`); its row id."""
    with desk.db.read() as session:
        [row_id] = session.scalars(
            select(Outbox.id).where(Outbox.kind == Kind.ORIGIN_POST, Outbox.state == OutboxState.FAILED)
        ).all()
    desk.emulator.user_join(BOT_USER, CONNECT)
    assert retry_outbox(desk.service.settings, row_id, out=io.StringIO()) == 0
    return row_id


def first_response_at(desk: Desk) -> datetime | None:
    with desk.db.read() as session:
        return session.scalar(select(Ticket.first_response_at))


def test_a_failed_reply_sent_again_by_the_operator_is_marked_delivered(desk: Desk) -> None:
    """The bot was out of the customer's channel, so the reply failed (❌); invited back, the
    operator sends it again (`servicedesk outbox --retry`): the customer has it, once, so the
    receipt and the stored state must say delivered. Only then is it the ticket's first response:
    while it had failed, the customer had no answer."""
    customer_ts, card_ts = open_ticket(desk)
    desk.idle()
    desk.emulator.user_leave(BOT_USER, CONNECT)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Reply while the bot is out", thread_ts=card_ts)
    desk.wait(lambda: "x" in desk.reactions(TRIAGE, reply_ts), "the failed receipt")
    assert first_response_at(desk) is None
    retried_at = utcnow()
    retry_the_failed_customer_thread_post(desk)
    desk.wait(lambda: "white_check_mark" in desk.reactions(TRIAGE, reply_ts), "the delivered receipt")
    answered = first_response_at(desk)
    assert answered is not None and answered >= retried_at
    desk.wait(lambda: "x" not in desk.reactions(TRIAGE, reply_ts), "the failed mark taken off")
    assert reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC)
    assert [text for text in customer_sees(desk, customer_ts) if "bot is out" in text] == [
        "Reply while the bot is out"
    ]
    desk.wait_thread_text(TRIAGE, card_ts, "Delivered after all")


def plain_text(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def test_an_edit_after_delivery_tells_the_thread_an_email_participant_has_the_earlier_text(
    desk: Desk,
) -> None:
    customer_ts, card_ts = open_ticket(desk)
    desk.emulator.user_post(ALICE, TRIAGE, f"!cc add {BOSS}", thread_ts=card_ts)
    desk.wait_thread_text(TRIAGE, card_ts, "added boss@globex.example")
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "The refund is 100 EUR", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "100 EUR")
    desk.wait(
        lambda: [m for m in desk.sink.messages if m.rcpt_tos == [BOSS] and "100 EUR" in plain_text(m)],
        "the reply by email to the participant",
    )
    desk.wait(lambda: reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC))
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "The refund is 10 EUR")
    desk.wait(lambda: "10 EUR" in desk.emulator.message(CONNECT, posted.ts).text or None)
    desk.wait_thread_text(TRIAGE, card_ts, "already has the earlier text by email")


def _edit_held_back(desk: Desk, user: str, channel: str, ts: str, text: str) -> dict[str, Any]:
    """Someone edits, and Slack's first delivery of that event does not reach the desk."""
    desk.emulator.deliver_events_to(None)
    desk.emulator.user_edit(user, channel, ts, text)
    envelope = desk.emulator.events[-1]
    desk.emulator.deliver_events_to(desk.url)
    return envelope


def _retry(desk: Desk, envelope: dict[str, Any]) -> None:
    """Slack retries an event whose first delivery failed: the same event, X-Slack-Retry-Num 1."""
    sender = RequestSender(desk.url, SIGNING_SECRET)
    body = json.dumps(envelope).encode()
    answer = asyncio.run(sender.post(body, "application/json", retry_num=1, retry_reason="http_error"))
    assert answer.status == 200


def test_an_older_edit_arriving_late_does_not_undo_a_newer_one(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    # A customer's message: the triage copy keeps the last edit.
    ts = desk.emulator.user_post(DAN, CONNECT, "The export is empty", thread_ts=customer_ts)
    desk.wait_thread_text(TRIAGE, card_ts, "export is empty")
    first = _edit_held_back(desk, DAN, CONNECT, ts, "The export is empty (v2)")
    desk.emulator.user_edit(DAN, CONNECT, ts, "The export is empty (final)")
    desk.wait_thread_text(TRIAGE, card_ts, "(final)")
    # A delivered staff reply: the customer keeps the staff member's last words.
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Restart the exporter", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "Restart the exporter")
    desk.wait(lambda: reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC))
    second = _edit_held_back(desk, ALICE, TRIAGE, reply_ts, "Restart the exporter twice")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "Do NOT restart the exporter")
    desk.wait(lambda: "Do NOT" in desk.emulator.message(CONNECT, posted.ts).text or None)
    desk.idle()
    updates = len(desk.emulator.calls_to("chat.update"))
    _retry(desk, first)
    _retry(desk, second)
    desk.idle()
    assert len(desk.emulator.calls_to("chat.update")) == updates
    assert "(final)" in (desk.message_at(CONNECT, ts) or Message()).body_markdown
    assert "Do NOT" in (desk.message_at(TRIAGE, reply_ts) or Message()).body_markdown
    assert desk.emulator.message(CONNECT, posted.ts).text.startswith("Do NOT")


def test_an_older_edit_of_a_message_its_newer_edit_overtook_changes_nothing(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    # Dan writes and edits twice; only the last edit's event gets through at first.
    desk.emulator.deliver_events_to(None)
    ts = desk.emulator.user_post(DAN, CONNECT, "Export broken", thread_ts=customer_ts)
    posted = desk.emulator.events[-1]
    desk.emulator.user_edit(DAN, CONNECT, ts, "Export broken (v2)")
    first = desk.emulator.events[-1]
    desk.emulator.deliver_events_to(desk.url)
    desk.emulator.user_edit(DAN, CONNECT, ts, "Export broken (final)")
    desk.wait_thread_text(TRIAGE, card_ts, "(final)")  # the edit, taken as the message
    desk.idle()
    updates = len(desk.emulator.calls_to("chat.update"))
    _retry(desk, first)
    _retry(desk, posted)
    desk.idle()
    assert "(final)" in (desk.message_at(CONNECT, ts) or Message()).body_markdown
    assert len(desk.emulator.calls_to("chat.update")) == updates


# ----- duplicates, bots, forged requests -----


def test_a_retried_event_makes_one_ticket(desk: Desk) -> None:
    customer_ts, _card_ts = open_ticket(desk)
    [envelope] = [e for e in desk.emulator.events if e["event"].get("ts") == customer_ts]
    sender = RequestSender(desk.url, SIGNING_SECRET)
    body = json.dumps(envelope).encode()
    for retry in (1, 2):
        attempt = asyncio.run(
            sender.post(body, "application/json", retry_num=retry, retry_reason="http_timeout")
        )
        assert attempt.status == 200
    desk.idle()
    assert desk.ticket_count() == 1
    assert len([m for m in desk.thread(CONNECT, customer_ts) if "Ticket #1 opened" in m.text]) == 1


def test_a_forged_or_stale_request_gets_401_and_changes_nothing(desk: Desk) -> None:
    desk.emulator.deliver_events_to(None)
    desk.emulator.user_post(DAN, CONNECT, "Please open a ticket")
    [envelope] = desk.emulator.events
    desk.emulator.deliver_events_to(desk.url)
    sender = RequestSender(desk.url, SIGNING_SECRET)
    body = json.dumps(envelope).encode()
    forged = asyncio.run(sender.post(body, "application/json", signing_secret="not-the-secret"))
    stale = asyncio.run(sender.post(body, "application/json", timestamp=int(time.time()) - 600))
    unsigned = asyncio.run(sender.post(body, "application/json", signature="v0=" + "0" * 64))
    not_a_time = asyncio.run(
        sender.post(body, "application/json", extra_headers={"X-Slack-Request-Timestamp": "abc"})
    )
    assert (forged.status, stale.status, unsigned.status, not_a_time.status) == (401, 401, 401, 401)
    # Slack's certificate check is signed like every request; an unsigned one is refused too.
    ssl_check = b"ssl_check=1&token=x"
    form = "application/x-www-form-urlencoded"
    assert asyncio.run(sender.post(ssl_check, form, signing_secret="not-the-secret")).status == 401
    assert asyncio.run(sender.post(ssl_check, form)).status == 200
    with desk.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 0
    assert desk.ticket_count() == 0


# ----- staff turn messages into tickets -----


def test_the_ticket_emoji_opens_a_ticket_for_the_messages_author(desk: Desk) -> None:
    root = desk.emulator.user_post(ALICE, HELP, "The printers get replaced today")
    reply = desk.emulator.user_post(CAROL, HELP, "Mine only prints blank pages", thread_ts=root)
    desk.idle()
    assert desk.ticket_count() == 0
    desk.emulator.user_react(ALICE, HELP, reply, "ticket")
    desk.wait_thread_text(HELP, root, "Ticket #1 opened")
    desk.wait_thread_text(TRIAGE, desk.card_ts(1), "blank pages")
    desk.emulator.user_react(ALICE, HELP, reply, "ticket")  # a toggle: Slack sends nothing more
    desk.idle()
    assert desk.ticket_count() == 1


def test_the_create_ticket_shortcut_opens_a_ticket_and_says_so(desk: Desk) -> None:
    root = desk.emulator.user_post(ALICE, CONNECT, "We upgraded the servers")
    reply = desk.emulator.user_post(DAN, CONNECT, "Since then exports fail", thread_ts=root)
    desk.emulator.user_shortcut(ALICE, CONNECT, reply).wait(10)
    desk.wait_thread_text(CONNECT, root, "Ticket #1 opened")
    desk.wait(lambda: any("Opened ticket #1." in str(p.body) for p in desk.emulator.response_posts) or None)
    desk.emulator.user_shortcut(DAN, CONNECT, reply).wait(10)
    desk.wait(lambda: any("Only support staff" in str(p.body) for p in desk.emulator.response_posts) or None)
    assert desk.ticket_count() == 1


# ----- Socket Mode -----


def test_socket_mode_runs_the_same_intake_story(socket_desk: Desk) -> None:
    desk = socket_desk
    customer_ts, card_ts = open_ticket(desk, "Over the socket: *help*")
    desk.wait_thread_text(TRIAGE, card_ts, "Over the socket")
    desk.emulator.user_post(ALICE, TRIAGE, "Answer over the socket", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "Answer over the socket")
    assert posted.username == "alice"
    assert all(delivery.via == "socket_mode" for delivery in desk.emulator.deliveries)
    assert desk.emulator.socket_acks
    root = desk.emulator.user_post(ALICE, HELP, "Printers get replaced")
    reply = desk.emulator.user_post(CAROL, HELP, "Mine prints blank pages", thread_ts=root)
    desk.emulator.user_shortcut(ALICE, HELP, reply).wait(10)
    desk.wait_thread_text(HELP, root, "Ticket #2 opened")


# ----- App Home and `servicedesk check` -----


def test_opening_the_app_home_publishes_it(desk: Desk) -> None:
    desk.emulator.user_open_home(ALICE)
    view = desk.wait(lambda: desk.emulator.home_view(ALICE))
    assert view.body.get("type") == "home"


def test_servicedesk_check_names_a_missing_scope_and_a_channel_without_the_bot(
    tmp_path: Path, emulator: SlackEmulator, database_url: str, mail_sink: MailSink
) -> None:
    emulator.scopes = [scope for scope in BOT_SCOPES if scope != "chat:write.customize"]
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_INTAKE_CHANNELS": f"{CONNECT},{EMPTY}",
        "SERVICEDESK_DATABASE_URL": database_url,
        "SERVICEDESK_SMTP_RELAY_URL": mail_sink.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "the app lacks the scope chat:write.customize" in done.stdout
    assert "the bot is not a member of the intake channel #random (C0EMPTY)" in done.stdout
    assert "the bot is in the triage channel #triage (C0TRIAGE)" in done.stdout
    assert done.stdout.rstrip().endswith("2 problems found.")
    assert BOT_TOKEN not in done.stdout + done.stderr


@pytest.mark.parametrize("fault", [Fault.ratelimited(), Fault.server_error(503)], ids=["429", "503"])
def test_an_event_arriving_while_slack_hiccups_is_stored_all_the_same(
    start_service: StartService, fault: Fault
) -> None:
    """A fresh web process asks Slack nothing before it stores an event: a 429 or a 5xx from Slack
    at that moment must not get the event answered 200 unstored (Slack never resends those)."""
    running = start_service(roles={"web"}, intake_channels=(CONNECT,))
    running.emulator.add_fault("auth.test", fault, times=None)
    running.emulator.user_post(DAN, CONNECT, "The printer is broken")
    delivery = wait_until(lambda: next((d for d in running.emulator.deliveries if d.done), None), "the event")
    assert delivery.status == 200
    with running.db.read() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 1


def test_the_bot_removed_from_an_intake_channel_tells_the_triage_channel_at_once(desk: Desk) -> None:
    """Someone removed the bot from an intake channel, and nothing was said until a post there
    failed, by which time customers' new requests had gone unanswered. Slack tells the removed app
    with `channel_left` (`group_left` for a private channel): the triage channel hears of it once,
    with who did it and what to do."""
    open_ticket(desk)
    desk.emulator.user_leave(BOT_USER, CONNECT, by=ALICE)

    def notices() -> list[str]:
        return [
            m.text
            for m in desk.emulator.messages(TRIAGE)
            if m.bot_id and not m.is_reply and "removed the desk from" in (m.text or "")
        ]

    [notice] = desk.wait(notices, "the notice in the triage channel")
    assert f"<#{CONNECT}>" in notice and f"<@{ALICE}>" in notice and "/invite" in notice
    desk.idle()
    assert len(notices()) == 1
