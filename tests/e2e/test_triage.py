"""Triage end to end: signed slash commands, card controls, in-thread `!` commands and the App Home
tab into the running service (HTTP + worker), against the Slack emulator and a mail sink.

Asserts on the store and on what the emulator received: ephemeral answers, the card updated in
place with chat.update, the short lines in the ticket's thread, and the customer's emails.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from sandbox import MailSink, RequestSender, SlackEmulator
from sandbox.faults import Fault
from sandbox.workspace import ALICE, BOB, CAROL, SIGNING_SECRET, TRIAGE
from store import actions, queries
from store.db import Database
from store.models import InboundItem, InboundState, Label, Message, Outbox, Participant, Ticket, TicketLink
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import WAIT_SECONDS, RunningDesk, StartService, message_text
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(120)


@dataclass
class Triage:
    """The shared running service, seen from triage: commands, cards, threads, the store."""

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

    def ticket(self, number: int) -> Ticket:
        with self.db.transaction() as session:
            found = actions.ticket_by_number(session, number)
            _ = found.labels, found.requester
            return found

    def card_ts(self, number: int) -> str:
        return self.service.wait_for(lambda: self.ticket(number).triage_ts, f"the card of #{number}")

    def thread_url(self, number: int) -> str:
        """Ticket #number's triage thread, as Slack links it."""
        return f"https://acme.slack.com/archives/{TRIAGE}/p{self.card_ts(number).replace('.', '')}"

    def card_text(self, number: int) -> str:
        message = self.emulator.message(TRIAGE, self.card_ts(number))
        return message_text(message) if message is not None else ""

    def wait_card(self, number: int, needle: str) -> None:
        self.service.wait_for(
            lambda: needle in self.card_text(number), f"{needle!r} on the card of #{number}"
        )

    def thread_texts(self, number: int) -> list[str]:
        return [message.text for message in self.service.thread(self.card_ts(number))]

    def wait_line(self, number: int, text: str) -> None:
        self.service.wait_for_thread_text(self.card_ts(number), text)

    def outbox_count(self, kind: str) -> int:
        with self.db.transaction() as session:
            return int(
                session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == kind)) or 0
            )

    def wait_worker_idle(self) -> None:
        """Every Slack event sent so far stored (the app answers each only once it is) and handled
        by the worker: an event still on its way would find the worker idle before it."""
        self.emulator.wait_idle(WAIT_SECONDS)

        def idle() -> bool:
            with self.db.transaction() as session:
                busy = session.scalar(
                    select(func.count())
                    .select_from(InboundItem)
                    .where(InboundItem.state.in_([InboundState.PENDING, InboundState.CLAIMED]))
                )
            return not busy

        self.service.wait_for(idle, "the worker to handle every event")

    def command(self, user: str, text: str, channel: str = TRIAGE) -> str:
        interaction = self.emulator.user_command(user, channel, "/desk", text).wait(10)
        answer = interaction.ack_payload or {}
        assert answer.get("response_type") == "ephemeral"
        return str(answer.get("text") or "")


class Empty:
    body: dict[str, object] = {}


@pytest.fixture
def running(service: RunningDesk) -> Triage:
    return Triage(service)


def test_desk_new_then_triage_commands_update_card_thread_and_customer(running: Triage) -> None:
    answer = running.command(ALICE, "new <mailto:dan@globex.example|dan@globex.example> Printer on fire")
    assert answer.startswith("Opened #1 for dan@globex.example")
    card = running.card_text(1)
    assert "#1 Printer on fire" in card and "Opened by staff" in card

    assert running.command(ALICE, "priority 1 high") == "#1 now has high priority."
    assert running.command(BOB, "assign 1 <@U0ALICE|alice>") == "Assigned #1 to <@U0ALICE>."
    # Names as Slack shows them: the display name, the real name when that is empty (Bob's). The
    # new owner is mentioned, so Slack tells Alice the ticket is hers.
    running.wait_line(1, "Bob Baker assigned the ticket to <@U0ALICE>")
    assert running.thread_texts(1) == [
        "alice set priority to high",
        "Bob Baker assigned the ticket to <@U0ALICE>",
    ]
    running.wait_card(1, "Priority: High")
    assert "Assignee: <@U0ALICE>" in running.card_text(1)
    # Updated in place: one card message, edited.
    assert len(running.emulator.messages(TRIAGE)) == 1
    assert running.emulator.calls_to("chat.update", channel=TRIAGE)

    # Told of its closing once the desk has written to them (the first email is a person's).
    running.service.post_as(ALICE, "Found it: the fuser.", thread_ts=running.card_ts(1))
    running.service.wait_for_mails(1)
    assert running.command(ALICE, "close 1") == "#1 is now closed. The customer is told."
    mail = running.service.wait_for_mails(2)[1]
    assert mail.rcpt_tos == ["dan@globex.example"]
    assert mail.message["Auto-Submitted"] == "auto-generated"
    running.wait_card(1, "Status: Closed")
    assert running.ticket(1).status == "closed"


def test_errors_and_refusals_change_nothing(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    running.card_ts(1)
    assert running.command(ALICE, "close 42") == "There is no ticket #42."
    assert running.command(ALICE, "frobnicate 1").startswith("Unknown command `/desk frobnicate`")
    assert running.command(ALICE, "priority 1 whenever").endswith(
        "Usage: `/desk priority &lt;n&gt; low|normal|high|urgent`"
    )
    # Placeholders reach Slack escaped: a bare `<n>` or `<email|@user>` is Slack's link syntax, shown
    # as "n" or as a link labelled "@user". Every `<` left is a mention or a real link.
    interaction = running.emulator.user_command(ALICE, TRIAGE, "/desk", "help").wait(10)
    answer = interaction.ack_payload or {}
    shown = [str(answer.get("text"))] + [json.dumps(block) for block in answer.get("blocks") or []]
    assert "`/desk new &lt;email&gt; &lt;subject&gt;`" in shown[0]
    assert "`/desk customer &lt;email|@user&gt;`" in shown[0]
    assert not [text for text in shown if re.search(r"<(?![@#!]|https?:|mailto:)", text)]
    assert running.command(ALICE, "help merge") == "Usage: `/desk merge &lt;n&gt; into &lt;m&gt;`"
    # Carol is not in the triage channel: not staff.
    assert (
        running.command(CAROL, "close 1", channel="C0HELP")
        == "Sorry, only members of the support team can do that."
    )
    running.emulator.wait_idle()
    assert running.ticket(1).status == "open" and running.ticket(1).priority == "normal"
    assert running.outbox_count("slack.thread_line") == 0 and running.outbox_count("email.send") == 0


def test_values_the_desk_cannot_keep_get_an_answer_and_change_nothing(running: Triage) -> None:
    # Each answer is checked as an ephemeral one: a command that failed inside would get none.
    long_address = "x" * 330 + "@globex.example"
    assert running.command(ALICE, f"new {long_address} Printer").startswith(
        f"`{long_address[:60]}` is not an email address."
    )
    assert "is not an email address" in running.command(ALICE, f"new {'x' * 65}@globex.example Printer")
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    assert "is not an email address" in running.command(ALICE, f"cc 1 add {long_address}")
    assert running.command(ALICE, "label-create outage cornflowerblueish").startswith(
        "'cornflowerblueish' is not a color"
    )
    assert "is not a color" in running.command(ALICE, "label-create outage #zzzzzz")
    assert running.command(ALICE, "assign 1 <@U0NOBODY>").startswith("Slack knows no one as `U0NOBODY`")
    assert running.command(ALICE, "assign 1 <@U" + "A" * 40 + ">").startswith("I don't know who")
    assert running.command(ALICE, "list label:bgu").startswith("There is no label named `bgu`")
    running.emulator.wait_idle()
    ticket = running.ticket(1)
    assert ticket.assignee_slack_id is None and ticket.labels == []
    with running.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
        assert session.scalar(select(func.count()).select_from(Label)) == 0
        assert [p.email for p in session.scalars(select(Participant))] == ["dan@globex.example"]


def test_search_finds_words_as_typed_in_slack(running: Triage) -> None:
    # A Slack message is kept as Markdown, where `[E42]` is written `\[E42\]`.
    running.command(ALICE, "new dan@globex.example Printer")
    running.service.post_as(
        ALICE, "note: the panel shows [E42], spool dir is C:\\Spool\\queue", thread_ts=running.card_ts(1)
    )
    running.service.wait_for(lambda: "Showing 1–1 of 1" in running.command(ALICE, "search panel"), "the note")
    for words in ("[E42]", "C:\\Spool\\queue", "panel [e42]"):
        assert "Showing 1–1 of 1" in running.command(ALICE, f"search {words}"), words
    assert running.command(ALICE, "search [E43]") == "*Tickets matching* “[E43]” — No tickets match."


def test_card_controls_change_the_ticket_and_refuse_outsiders(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "label-create bug")
    card_ts = running.card_ts(1)
    running.emulator.user_block_action(ALICE, TRIAGE, card_ts, "ticket_priority", "urgent").wait(10)
    running.emulator.user_block_action(BOB, TRIAGE, card_ts, "ticket_assignee", BOB).wait(10)
    running.emulator.user_block_action(ALICE, TRIAGE, card_ts, "ticket_status", "pending").wait(10)
    assert running.ticket(1).priority == "urgent"
    assert running.ticket(1).assignee_slack_id == BOB
    assert running.ticket(1).status == "pending"
    running.wait_line(1, "Bob Baker assigned the ticket to Bob Baker")
    running.wait_card(1, "Status: Pending")
    assert "Priority: Urgent" in running.card_text(1)

    # The labels menu sends the whole selection.
    message = running.emulator.message(TRIAGE, card_ts)
    assert message is not None
    block_id = next(b["block_id"] for b in message.blocks if b.get("type") == "actions")
    labels = {
        "action_id": "ticket_labels",
        "block_id": block_id,
        "type": "multi_static_select",
        "selected_options": [{"text": {"type": "plain_text", "text": "bug"}, "value": "bug"}],
        "action_ts": "1.1",
    }
    running.emulator.user_block_action(ALICE, TRIAGE, card_ts, labels).wait(10)
    assert [label.name for label in running.ticket(1).labels] == ["bug"]

    # Someone who is not staff (Carol, who cannot see the triage channel) sending a signed
    # payload for the card: refused, told privately, nothing changes.
    interaction = running.emulator.user_block_action(ALICE, TRIAGE, card_ts, "ticket_priority", "low")
    interaction.wait(10)
    assert running.ticket(1).priority == "low"
    forged_payload = dict(interaction.payload)
    forged_payload["user"] = {"id": CAROL, "username": "carol", "name": "carol", "team_id": "T0HOME"}
    forged_payload["trigger_id"] = "9999.8888.carols-own-press"  # her press, not a replay of Alice's
    forged_payload["actions"] = [dict(forged_payload["actions"][0], selected_option={"value": "urgent"})]
    sender = RequestSender(running.url, SIGNING_SECRET)
    delivery = sender.send_interaction_sync(forged_payload)
    assert delivery.ok
    running.service.wait_for(
        lambda: any(
            "only members of the support team" in str(p.body) for p in running.emulator.response_posts
        ),
        "the refusal, privately",
    )
    assert running.ticket(1).priority == "low"


def test_thread_commands_act_on_the_threads_ticket(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    card_ts = running.card_ts(1)
    running.emulator.user_post(ALICE, TRIAGE, "!priority urgent", thread_ts=card_ts)
    running.service.wait_for(lambda: running.ticket(1).priority == "urgent", "priority urgent")
    running.wait_line(1, "alice set priority to urgent")
    running.emulator.user_post(ALICE, TRIAGE, "!assign <@U0BOB>", thread_ts=card_ts)
    running.service.wait_for(lambda: running.ticket(1).assignee_slack_id == BOB, "Bob assigned")
    running.wait_line(1, "alice assigned the ticket to ")
    running.emulator.user_post(ALICE, TRIAGE, "!assign <@U0NOBODY>", thread_ts=card_ts)
    running.service.wait_for(
        lambda: any(
            "Slack knows no one as `U0NOBODY`" in e.text for e in running.emulator.ephemerals(TRIAGE, ALICE)
        ),
        "the refusal, privately",
    )
    assert running.ticket(1).assignee_slack_id == BOB
    running.emulator.user_post(ALICE, TRIAGE, "!frobnicate", thread_ts=card_ts)
    running.service.wait_for(
        lambda: any(
            "Unknown command `!frobnicate`" in e.text for e in running.emulator.ephemerals(TRIAGE, ALICE)
        ),
        "the usage line, privately",
    )
    # At the top of the channel, outside any thread, a verb runs nothing and its author is told
    # where it works; other talk that starts with `!` is the team's own.
    running.emulator.user_post(ALICE, TRIAGE, "!!! heads up: the vendor has an outage")
    running.emulator.user_post(ALICE, TRIAGE, "!Close 1")
    running.service.wait_for(
        lambda: any(
            "`!close` was not run: commands typed with `!` work in a ticket's thread" in e.text
            for e in running.emulator.ephemerals(TRIAGE, ALICE)
        ),
        "where `!` commands work, privately",
    )
    # A command or note typed with a Chinese or Japanese input method (full-width `！` and `：`)
    # is one too: it was delivered to the customer as a reply.
    running.emulator.user_post(ALICE, TRIAGE, "！priority low", thread_ts=card_ts)
    running.emulator.user_post(ALICE, TRIAGE, "Note： the fuser is on order", thread_ts=card_ts)
    running.service.wait_for(lambda: running.ticket(1).priority == "low", "priority low")
    # Never delivered to the customer.
    running.wait_worker_idle()
    assert running.ticket(1).status == "open"
    assert not any("heads up" in e.text for e in running.emulator.ephemerals(TRIAGE, ALICE))
    with running.db.transaction() as session:
        written = session.execute(select(Message.visibility, Message.body_markdown)).all()
    assert [(visibility, body) for visibility, body in written] == [("internal", "the fuser is on order")]


def test_home_tab_shows_the_queue_with_thread_links(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new erin@globex.example Laptop")
    running.command(ALICE, "assign 1 me")
    running.card_ts(2)
    running.emulator.user_open_home(ALICE)
    view = running.service.wait_for(lambda: running.emulator.home_view(ALICE), "Alice's home")
    shown = json.dumps(view.body)
    assert "Your open tickets" in shown and "Printer" in shown and "Laptop" in shown
    assert f"archives/{TRIAGE}/p" in shown
    # Not staff: the tab says whose it is, and shows no ticket.
    running.emulator.user_open_home(CAROL)
    outsider = running.service.wait_for(lambda: running.emulator.home_view(CAROL), "Carol's home")
    assert "Printer" not in json.dumps(outsider.body)
    assert "support team's queue" in json.dumps(outsider.body)
    # Someone who leaves the triage channel no longer sees the queue they last saw.
    running.emulator.user_open_home(BOB)
    running.service.wait_for(
        lambda: "Printer" in json.dumps((running.emulator.home_view(BOB) or Empty).body), "Bob's queue"
    )
    running.emulator.user_leave(BOB, TRIAGE)
    running.wait_worker_idle()
    running.emulator.user_open_home(BOB)
    running.service.wait_for(
        lambda: "Printer" not in json.dumps((running.emulator.home_view(BOB) or Empty).body),
        "Bob's tab without the queue",
    )


def test_merge_cross_links_both_threads_and_tells_the_customer_once(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new erin@globex.example Printer again")
    running.card_ts(1)
    # Erin has heard from the desk about #2, so she is told where it went.
    running.service.post_as(ALICE, "Looking into it.", thread_ts=running.card_ts(2))
    running.service.wait_for_mails(1)
    answer = running.command(ALICE, "merge 2 into 1")
    assert answer.startswith("Merged #2 into #1")

    # Each line links the other ticket's thread.
    running.wait_line(2, f"alice merged this ticket into <{running.thread_url(1)}|#1>")
    running.wait_line(1, f"alice merged <{running.thread_url(2)}|#2> into this ticket")
    mail = running.service.wait_for_mails(2)[1]
    assert mail.rcpt_tos == ["erin@globex.example"]
    assert mail.message["Auto-Submitted"] == "auto-generated"
    # Her replies land on #1, so the footer names #1 (it said "Ticket #2. Reply to this email").
    text, html = mail.message.get_body(("plain",)), mail.message.get_body(("html",))
    assert text is not None and "Ticket #1. Reply to this email to add to it." in text.get_content()
    assert html is not None and "Ticket #1 &middot; reply to this email" in html.get_content()
    assert "Ticket #2 &middot;" not in html.get_content()
    running.wait_card(2, "Merged into #1")
    running.wait_card(1, "#2 (duplicated by)")


def test_a_tracker_link_is_the_same_link_whatever_the_case_of_its_host(running: Triage) -> None:
    """Host names are case-insensitive (RFC 3986 6.2.2.1), and `https://x` is `https://x/`: a link
    written one way could not be removed (nor was it found to be linked already) written another."""
    running.command(ALICE, "new dan@globex.example Printer")
    written = "https://Jira.Example.com/browse/OPS-7"
    assert running.command(ALICE, f"link 1 {written}") == f"Linked #1 to {written} (relates)."
    again = running.command(ALICE, "link 1 HTTPS://jira.example.com:443/browse/OPS-7")
    assert again.endswith(
        "already linked to HTTPS://jira.example.com:443/browse/OPS-7 (relates): nothing changed."
    )
    assert running.command(ALICE, "link 1 https://status.example.com") == (
        "Linked #1 to https://status.example.com (relates)."
    )
    assert running.command(ALICE, "unlink 1 https://jira.example.com/browse/OPS-7").startswith(
        "Removed the link"
    )
    assert running.command(ALICE, "unlink 1 https://STATUS.example.com/").startswith("Removed the link")
    # The path is not folded: it may be case-sensitive on the tracker.
    assert running.command(ALICE, "link 1 https://jira.example.com/browse/ops-7").startswith("Linked #1")
    running.wait_card(1, "ops-7")
    assert "OPS-7" not in running.card_text(1) and "status.example.com" not in running.card_text(1)


def test_merge_makes_a_link_from_the_other_side_a_duplicate_link(running: Triage) -> None:
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new erin@globex.example Printer again")
    running.card_ts(2)
    assert running.command(ALICE, "link 1 2 blocks") == "Linked #1 to #2 (blocks)."
    running.wait_card(1, "#2 (blocks)")
    # Each thread's line links the other ticket's thread.
    running.wait_line(1, f"alice linked <{running.thread_url(2)}|#2> (blocks)")
    running.wait_line(2, f"alice linked <{running.thread_url(1)}|#1> to this ticket (blocks)")
    assert running.command(ALICE, "merge 2 into 1").startswith("Merged #2 into #1")
    running.wait_card(1, "#2 (duplicated by)")
    running.wait_card(2, "#1 (duplicates)")
    assert "blocks" not in running.card_text(1)
    # The merge's link stays while #2's banner names #1: neither removed nor turned into another
    # kind from #1's side (it was, leaving "Merged into #1" with no link to #1).
    refusal = "#2 was merged into #1, so the link between them is the merge's and stays."
    assert running.command(ALICE, "unlink 1 2") == refusal
    assert running.command(ALICE, "link 1 2 relates") == refusal
    assert running.command(ALICE, "link 1 #2") == refusal
    with running.db.read() as session:
        assert [(link.kind, link.ticket_id) for link in session.scalars(select(TicketLink))] == [
            ("duplicates", running.ticket(2).id)
        ]


def test_a_slack_customer_merged_away_still_hears_replies_and_notices(start_service) -> None:
    from sandbox.workspace import CONNECT, DAN

    running = Triage(start_service(intake_channels=(CONNECT,)))
    dan_ts = running.emulator.user_post(DAN, CONNECT, "Printer down on floor 3")

    def slack_ticket_carded() -> bool:
        with running.db.transaction() as session:
            return session.scalar(select(Ticket.triage_ts).where(Ticket.number == 1)) is not None

    running.service.wait_for(slack_ticket_carded, "Dan's ticket and its card")
    running.command(ALICE, "new erin@globex.example Printers down")
    running.card_ts(2)
    assert running.command(ALICE, "merge 1 into 2").startswith("Merged #1 into #2")

    running.emulator.user_post(ALICE, TRIAGE, "A technician is on the way.", thread_ts=running.card_ts(2))

    def dans_thread() -> str:
        return "\n".join(m.text or "" for m in running.emulator.messages(CONNECT, thread_ts=dan_ts))

    running.service.wait_for(
        lambda: "A technician is on the way." in dans_thread(), "the reply in Dan's thread"
    )
    # Erin, the requester of the ticket it was merged into, has it by email.
    [mail] = running.service.wait_for_mails(1)
    assert mail.rcpt_tos == ["erin@globex.example"]
    text_part = mail.message.get_body(preferencelist=("plain",))
    assert text_part is not None and "A technician is on the way." in text_part.get_content()
    running.command(ALICE, "close 2")
    running.service.wait_for(lambda: "#2" in dans_thread().split("on the way.")[-1], "the close notice")
    texts = [m.text or "" for m in running.emulator.messages(CONNECT, thread_ts=dan_ts)]
    assert sum("A technician is on the way." in text for text in texts) == 1


def test_desk_is_answered_in_time_while_slack_lookups_hang(running: Triage) -> None:
    # Slack drops an answer later than 3 s; give the emulator room to record a late one, so a
    # command that waited for the hanging lookups (the Web API client gives up after 15 s) shows
    # as a missing answer below instead of passing by luck of the timing.
    dispatcher = running.emulator.dispatcher
    dispatcher.ack_timeout = 40.0
    dispatcher.retry = replace(dispatcher.retry, timeout=40.0)
    running.emulator.add_fault("conversations.members", Fault.hang(3))
    running.emulator.add_fault("users.info", Fault.hang(30), times=None)
    try:
        # Nobody is known as staff yet (the list is read on first use, slowly): the cache decides,
        # so the answer is a refusal — but an answer, in time.
        refused = running.emulator.user_command(ALICE, TRIAGE, "/desk", "list").wait(10)
        assert (refused.ack_payload or {}).get("text") == (
            "Sorry, only members of the support team can do that."
        )
        # The slow read of the staff list was not abandoned with the command: it finishes.
        running.service.wait_for(lambda: is_staff_cached(running.db, ALICE), "the staff list to be read")
        # Known staff now, no profile cached and users.info hanging: the command runs with the
        # name from the payload.
        command = running.emulator.user_command(ALICE, TRIAGE, "/desk", "new dan@globex.example Printer")
        answer = command.wait(10)
        assert str((answer.ack_payload or {}).get("text")).startswith("Opened #1 for dan@globex.example")
    finally:
        running.emulator.clear_faults()
    assert running.ticket(1).subject == "Printer"


def is_staff_cached(db: Database, user_id: str) -> bool:
    with db.read() as session:
        return bool(queries.is_staff(session, user_id))


def notes_saying(db: Database, text: str) -> int:
    with db.read() as session:
        found = select(func.count()).select_from(Message).where(Message.body_markdown.contains(text))
        return int(session.scalar(found) or 0)


def test_a_replayed_desk_command_or_card_press_changes_nothing(running: Triage) -> None:
    """The same signed request sent again (a captured request replayed inside Slack's 5 minutes)."""
    first = running.emulator.user_command(ALICE, TRIAGE, "/desk", "new dan@globex.example Printer").wait(10)
    assert str((first.ack_payload or {}).get("text")).startswith("Opened #1")
    sender = RequestSender(running.url, SIGNING_SECRET)
    replayed = sender.send_command_sync(dict(first.payload))
    assert (
        replayed.ok
        and replayed.response_json()["text"] == "That request was already received; it was not run again."
    )
    with running.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1

    press = running.emulator.user_block_action(ALICE, TRIAGE, running.card_ts(1), "ticket_status", "resolved")
    press.wait(10)
    running.service.wait_for(lambda: running.ticket(1).status == "resolved", "the press to resolve #1")
    assert running.command(ALICE, "reopen 1").startswith("Reopened #1")
    assert sender.send_interaction_sync(dict(press.payload)).ok
    assert running.command(ALICE, "show 1")  # the press would have been applied before this answer
    assert running.ticket(1).status == "open"


def test_a_desk_verb_that_cannot_finish_in_time_is_answered_as_not_done(running: Triage) -> None:
    """Another transaction holds the ticket past the command's time limit: Slack would show the
    person an error, so the verb must not commit later; it is rolled back and said to be."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    holding, answered = threading.Event(), threading.Event()

    def hold_the_ticket() -> None:
        # On PostgreSQL a row lock (as a merge or a long settle holds it); on SQLite any write
        # transaction, from another connection as another process's would be.
        with running.db.transaction() as session:
            session.execute(select(Ticket.id).where(Ticket.number == 1).with_for_update())
            holding.set()
            answered.wait(WAIT_SECONDS)

    holder = threading.Thread(target=hold_the_ticket)
    holder.start()
    try:
        assert holding.wait(WAIT_SECONDS)
        # Room for a late answer, so a verb that waited out the lock shows as a wrong answer.
        running.emulator.dispatcher.ack_timeout = 40.0
        answer = running.command(ALICE, "note 1 Customer phoned: printer replaced")
    finally:
        answered.set()
        holder.join()
    assert answer == "The desk's database was too busy to do that in time, so nothing changed. Try again."
    assert notes_saying(running.db, "printer replaced") == 0
    assert running.command(ALICE, "note 1 Customer phoned: printer replaced").startswith(":lock:")
    assert notes_saying(running.db, "printer replaced") == 1


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_a_desk_verb_whose_commit_answer_was_lost_is_not_said_to_have_failed(
    database_url: str, start_service: StartService
) -> None:
    """The server carried out the COMMIT; the answer never came back. "Nothing changed" would be
    false, and running it again would open a second ticket: the answer says to look first."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.start()).render_as_string(hide_password=False)
    try:
        running = Triage(start_service(database_url=proxied))
        proxy.swallow_commit_answer(b"INSERT INTO tickets")
        answer = running.command(ALICE, "new dan@globex.example Printer on fire")
        assert proxy.swallowed.is_set()
        assert answer.startswith("The desk lost its database connection while saving that")
        assert "may or may not have been done" in answer
        assert "#1" in running.command(ALICE, "show 1")  # looking first finds it was done
        with running.db.read() as session:
            assert session.scalar(select(func.count()).select_from(Ticket)) == 1
        running.service.stop()  # while the proxy still runs: the service stops with its database
    finally:
        proxy.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_a_thread_command_whose_commit_answer_was_lost_tells_its_author(
    database_url: str, start_service: StartService
) -> None:
    """A `!command` is taken once (recorded before it runs), so no retry would ever answer it: the
    author hears at once that it may or may not have been done, not silence."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.start()).render_as_string(hide_password=False)
    try:
        running = Triage(start_service(database_url=proxied))
        assert running.command(ALICE, "new dan@globex.example Printer on fire").startswith("Opened #1")
        proxy.swallow_commit_answer(b"INSERT INTO messages", b"printer replaced")
        running.emulator.user_post(
            ALICE, TRIAGE, "!note Customer phoned: printer replaced", thread_ts=running.card_ts(1)
        )
        answer = running.service.wait_for(
            lambda: next(
                (e.text for e in running.emulator.ephemerals(TRIAGE, ALICE) if "database" in e.text), None
            ),
            "the author told of the lost answer",
        )
        assert proxy.swallowed.is_set()
        assert "may or may not have been done" in answer
        assert notes_saying(running.db, "printer replaced") == 1  # the server had committed it
        running.service.stop()
    finally:
        proxy.stop()
