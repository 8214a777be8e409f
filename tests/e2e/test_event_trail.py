"""The ticket event trail, driven through the real interfaces (signed slash
commands and Slack events over HTTP into the running service, SMTP into its intake, the emulator
and the mail sink), read back from `ticket_events` and the tickets' time columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from sandbox.workspace import ALICE, BOB, CAROL, CONNECT, ERIN, HELP, SIGNING_SECRET, TRIAGE
from store.models import InboundItem, Message, Ticket, TicketEvent, utcnow
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService
from tests.e2e.test_triage import Triage

pytestmark = pytest.mark.timeout(120)


def card_ts(desk: Triage, number: int) -> str:
    """The ticket's card ts, once the ticket exists and its card is posted."""

    def posted() -> str | None:
        with desk.db.transaction() as session:
            ticket = session.scalar(select(Ticket).where(Ticket.number == number))
            return ticket.triage_ts if ticket is not None else None

    return desk.service.wait_for(posted, f"the card of #{number}")


def events(desk: Triage, number: int, *kinds: str) -> list[tuple[str, str | None, dict]]:
    with desk.db.transaction() as session:
        ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == number))
        query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
        if kinds:
            query = query.where(TicketEvent.kind.in_(kinds))
        return [(e.kind, e.actor, dict(e.data)) for e in session.scalars(query)]


def test_a_desk_new_tickets_own_opening_is_not_its_first_response(service: RunningDesk) -> None:
    """`/desk new`: staff's first message in the thread IS the request's opening (the first email
    the customer gets), not an answer to anything the customer asked. The first response is the
    first public reply delivered after the customer has written."""
    desk = Triage(service)
    desk.command(ALICE, "new dan@globex.example Printer on fire")
    ts = card_ts(desk, 1)
    service.post_as(BOB, "Hello Dan, we saw your printer is on fire; what model is it?", thread_ts=ts)
    [opening] = service.wait_for_mails(1)
    assert opening.rcpt_tos == ["dan@globex.example"]
    desk.wait_worker_idle()
    service.wait_for(
        lambda: ("delivered", None, {"message_id": 1}) in events(desk, 1), "the opening delivered"
    )

    # Nobody has asked the desk anything yet: nothing was answered.
    assert events(desk, 1, "first_response") == []
    assert desk.ticket(1).first_response_at is None
    assert "• First response: 0 answered" in desk.command(ALICE, "stats")

    # Dan answers the opening by email; Bob's reply to that is the ticket's first response.
    reply = EmailMessage()
    reply["From"] = "Dan <dan@globex.example>"
    reply["To"] = opening.message["Reply-To"] or opening.message["From"]
    reply["Subject"] = "Re: Printer on fire"
    reply["Message-ID"] = "<dan-answer@globex.example>"
    reply["In-Reply-To"] = opening.message["Message-ID"]
    reply.set_content("It is a LaserJet 4.")
    reply_key = desk.ticket(1).reply_key
    service.send_mail(
        reply.as_bytes(), mail_from="dan@globex.example", rcpt_tos=(f"support+{reply_key}@acme.test",)
    )
    service.wait_for(lambda: events(desk, 1, "message_in"), "Dan's answer on #1")
    service.post_as(BOB, "Thanks, a technician is on the way.", thread_ts=ts)
    service.wait_for_mails(2)
    service.wait_for(lambda: events(desk, 1, "first_response"), "the first response")
    [(_kind, actor, data)] = events(desk, 1, "first_response")
    assert actor == BOB and data["message_id"] != 1


def test_a_slack_customers_own_changes_name_them_not_the_desk(start_service: StartService) -> None:
    """A Slack customer's message and the reopen it causes are their doing: the trail names them
    (as it does for the ticket they opened), never `None`, which is the desk itself."""
    service = start_service(intake_channels=(CONNECT, HELP))
    desk = Triage(service)
    erin_ts = desk.emulator.user_post(ERIN, CONNECT, "The export button does nothing")
    card_ts(desk, 1)
    carol_ts = desk.emulator.user_post(CAROL, HELP, "My laptop will not boot")
    card_ts(desk, 2)
    desk.wait_worker_idle()
    assert desk.command(ALICE, "close 1").startswith("#1 is now closed")
    assert desk.command(ALICE, "close 2").startswith("#2 is now closed")
    desk.wait_worker_idle()
    desk.emulator.user_post(ERIN, CONNECT, "Still does nothing", thread_ts=erin_ts)
    desk.emulator.user_post(CAROL, HELP, "Still will not boot", thread_ts=carol_ts)
    service.wait_for(
        lambda: desk.ticket(1).status == "open" and desk.ticket(2).status == "open", "both reopened"
    )
    for number, person in ((1, ERIN), (2, CAROL)):
        [(_, opened_by, _)] = events(desk, number, "created")
        assert opened_by == person
        said = events(desk, number, "message_in", "reopened")
        assert [(kind, actor) for kind, actor, _ in said] == [
            ("message_in", person),
            ("message_in", person),
            ("reopened", person),
        ], number


def test_a_closed_ticket_set_to_resolved_keeps_one_consistent_set_of_times(service: RunningDesk) -> None:
    """closed -> resolved (by the card's status menu): the ticket is resolved, not closed, so it
    has no closed time; it was resolved all along, so its resolution time stays the first one."""
    desk = Triage(service)
    desk.command(ALICE, "new dan@globex.example Printer")
    ts = card_ts(desk, 1)
    assert desk.command(ALICE, "close 1").startswith("#1 is now closed")
    closed = desk.ticket(1)
    assert closed.closed_at is not None and closed.resolved_at == closed.closed_at
    desk.emulator.user_block_action(ALICE, TRIAGE, ts, "ticket_status", "resolved").wait(10)
    service.wait_for(lambda: desk.ticket(1).status == "resolved", "#1 resolved")
    resolved = desk.ticket(1)
    assert resolved.closed_at is None
    assert resolved.resolved_at == closed.resolved_at
    assert [(k, d) for k, _, d in events(desk, 1, "status", "reopened")] == [
        ("status", {"old": "open", "new": "closed"}),
        ("status", {"old": "closed", "new": "resolved"}),
    ]


def test_a_duplicate_merged_away_is_not_an_open_request_in_the_stats(service: RunningDesk) -> None:
    """Two mails about one printer: #2 merged into #1, then #1 resolved. Every request is done
    (nothing open or pending), yet `/desk stats` said "Opened: 2 ... Resolved: 1": the duplicate
    counted as a request opened and never resolved. The desk itself treats a merged-away duplicate
    as the same request (it is no repeat request); the trail records it as `merged`."""
    desk = Triage(service)
    for number, sender in ((1, "dan@globex.example"), (2, "erin@globex.example")):
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = SUPPORT
        mail["Subject"] = "Printer on fire"
        mail["Message-ID"] = f"<printer-{number}@globex.example>"
        mail.set_content("The printer on floor 2 is on fire.")
        service.send_mail(mail.as_bytes(), mail_from=sender)
        card_ts(desk, number)
    assert desk.command(ALICE, "merge 2 into 1").startswith("Merged #2 into #1")
    assert desk.command(ALICE, "status 1 resolved").startswith("#1 is now resolved")
    desk.wait_worker_idle()
    stats = desk.command(ALICE, "stats").split("\n")
    assert "• Now: 0 open or pending, 0 unassigned" in stats
    assert "• Opened: 1 (email 1)" in stats, stats
    assert any(line.startswith("• Resolved: 1, median") for line in stats), stats


def test_a_reply_taken_back_names_who_took_it_back(start_service: StartService) -> None:
    """Alice deletes one reply inside its undo window and edits another into a note: both changes
    are hers (only she can edit or delete her message), so the trail names her, as it names her for
    the reply itself; `None` is the desk's own doing."""
    service = start_service(reply_delay_seconds=5)
    desk = Triage(service)
    desk.command(ALICE, "new dan@globex.example Printer")
    ts = card_ts(desk, 1)
    wrong = service.post_as(ALICE, "Wrong customer, sorry", thread_ts=ts)
    pricing = service.post_as(ALICE, "Our margin is 40%", thread_ts=ts)
    service.wait_for(lambda: len(events(desk, 1, "reply")) == 2, "both replies stored")
    desk.emulator.user_delete(ALICE, TRIAGE, wrong)
    desk.emulator.user_edit(ALICE, TRIAGE, pricing, "note: Our margin is 40%")
    service.wait_for(lambda: len(events(desk, 1, "reply_cancelled", "reply_to_note")) == 2, "both taken back")
    taken_back = events(desk, 1, "reply_cancelled", "reply_to_note")
    assert sorted((kind, actor) for kind, actor, _ in taken_back) == [
        ("reply_cancelled", ALICE),
        ("reply_to_note", ALICE),
    ]


def home_section(desk: Triage, user: str, title: str) -> str:
    """The text of one section of the user's App Home tab, opened afresh."""
    before = desk.emulator.home_view(user)
    desk.emulator.user_open_home(user)
    view = desk.service.wait_for(
        lambda: (v := desk.emulator.home_view(user)) is not None and v is not before and v, "the home tab"
    )
    blocks = view.body["blocks"]
    start = next(i for i, b in enumerate(blocks) if b.get("type") == "header" and b["text"]["text"] == title)
    end = next((i for i in range(start + 1, len(blocks)) if blocks[i].get("type") == "header"), len(blocks))
    return json.dumps(blocks[start + 1 : end])


def test_a_reply_that_never_reached_the_customer_leaves_them_waiting(service: RunningDesk) -> None:
    """Dan's mail is answered, but the relay refuses his address for good: he has no answer. The
    ticket has no first response, and the Home tab still lists it as waiting for a reply."""
    desk = Triage(service)
    mail = EmailMessage()
    mail["From"] = "Dan <dan@globex.example>"
    mail["To"] = SUPPORT
    mail["Subject"] = "Printer on fire"
    mail["Message-ID"] = "<printer@globex.example>"
    mail.set_content("The printer on floor 2 is on fire.")
    service.send_mail(mail.as_bytes(), mail_from="dan@globex.example")
    ts = card_ts(desk, 1)
    service.wait_for_mails(1)  # the acknowledgement
    assert "Printer on fire" in home_section(desk, ALICE, "Waiting longest for a reply")
    service.sink.reject_recipient("dan@globex.example", 550)
    service.post_as(ALICE, "Please unplug it.", thread_ts=ts)
    service.wait_for(lambda: "Not delivered" in service.thread_text(ts) or _failed(desk), "the failure")
    desk.wait_worker_idle()
    assert events(desk, 1, "first_response") == [] and desk.ticket(1).first_response_at is None
    assert "Printer on fire" in home_section(desk, ALICE, "Waiting longest for a reply")


def _failed(desk: Triage) -> bool:
    with desk.db.transaction() as session:
        return session.scalar(select(Message.delivery).where(Message.direction == "outbound")) == "failed"


def test_staff_answering_in_the_customers_own_thread_is_a_first_response(start_service: StartService) -> None:
    """Alice (a member of the shared channel) answers Erin right in Erin's thread: Erin has a
    public staff answer from that moment. The desk quotes it into the triage thread; the trail must
    count it too, or the ticket shows as never answered and Erin as still waiting."""
    service = start_service(intake_channels=(CONNECT, HELP))
    desk = Triage(service)
    erin_ts = desk.emulator.user_post(ERIN, CONNECT, "The export button does nothing")
    ts = card_ts(desk, 1)
    desk.wait_worker_idle()
    assert "The export button" in home_section(desk, ALICE, "Waiting longest for a reply")
    desk.emulator.user_post(ALICE, CONNECT, "Looking at it now, Erin!", thread_ts=erin_ts)
    service.wait_for_thread_text(ts, "wrote in the customer's thread directly")
    desk.wait_worker_idle()
    [(_, actor, _)] = events(desk, 1, "first_response")
    assert actor == ALICE and desk.ticket(1).first_response_at is not None
    assert "The export button" not in home_section(desk, ALICE, "Waiting longest for a reply")


def written_at(slack_ts: str) -> datetime:
    """A Slack ts as the moment it names (to the microsecond, without a float's rounding)."""
    seconds, _, fraction = slack_ts.partition(".")
    return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=int(fraction.ljust(6, "0")))


def test_a_slack_request_and_its_answer_count_from_when_they_were_written(
    start_service: StartService,
) -> None:
    """Erin posts while the desk cannot take it in: Slack's first delivery fails and its retry
    comes later, and no worker runs (a deploy, a backlog) when it does. Alice answers her in her
    thread. Her ticket, its first message and every time measured from them (first response,
    resolution, "waiting since") start when she wrote (her message's ts), not when Slack's retry
    got in nor when a worker got to it; Alice's answer is the first response from when she wrote
    it."""
    web = start_service(roles={"web"}, intake_channels=(CONNECT,))
    desk = Triage(web)
    desk.emulator.deliver_events_to(None)
    erin_ts = desk.emulator.user_post(ERIN, CONNECT, "The export button does nothing")
    held_back = desk.emulator.events[-1]["event_id"]
    desk.emulator.deliver_events_to(f"{web.http_url}/slack/events", SIGNING_SECRET)
    desk.emulator.redeliver(held_back)
    desk.emulator.wait_idle(10)
    alice_ts = desk.emulator.user_post(ALICE, CONNECT, "Looking at it now, Erin!", thread_ts=erin_ts)
    desk.emulator.wait_idle(10)
    with desk.db.transaction() as session:
        arrived, answered = session.scalars(select(InboundItem.received_at).order_by(InboundItem.id)).all()
    worker = start_service(roles={"worker"}, intake_channels=(CONNECT,))
    started = utcnow()
    card_ts(Triage(worker), 1)
    Triage(worker).wait_worker_idle()
    ticket = desk.ticket(1)
    with desk.db.transaction() as session:
        created = session.scalar(select(TicketEvent.created_at).where(TicketEvent.kind == "created"))
        first_message = session.scalar(select(Message.created_at).where(Message.direction == "inbound"))
        responded = session.scalars(
            select(TicketEvent.created_at).where(TicketEvent.kind.in_(["direct_reply", "first_response"]))
        ).all()
    posted = written_at(erin_ts)
    assert posted < arrived < started
    assert (ticket.created_at, created, first_message) == (posted, posted, posted), (arrived, started)
    # Never later than it reached the desk: the two clocks may disagree a little.
    answer = min(written_at(alice_ts), answered)
    assert (ticket.first_response_at, *responded) == (answer, answer, answer), (answered, started)
