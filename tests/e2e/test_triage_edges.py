"""Triage verbs at their edges, driven through the running service (signed `/desk` commands,
signed message events for `!` commands, signed `block_actions` for the card), against the Slack
emulator and a mail sink."""

from __future__ import annotations

import io
import json
import urllib.request
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from bot.check import run_check
from bot.cli import main
from sandbox.faults import Fault
from sandbox.workspace import ALICE, CONNECT, DAN, ERIN, TRIAGE
from store.models import Message, Outbox, OutboxState, Participant, Ticket
from tests.e2e.conftest import RunningDesk, StartService, message_text
from tests.e2e.test_triage import Triage

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running(service: RunningDesk) -> Triage:
    return Triage(service)


def card_posted(running: Triage, number: int) -> str:
    """The card's ts once ticket #number exists and its card is posted (the ticket may not exist yet)."""

    def posted() -> str | None:
        with running.db.read() as session:
            return session.scalar(select(Ticket.triage_ts).where(Ticket.number == number))

    return running.service.wait_for(posted, f"the card of #{number}")


def test_a_slack_connect_customer_first_known_by_email_cannot_own_a_ticket(
    start_service: StartService,
) -> None:
    """docs/triage.md: "a customer from another organization's workspace who wrote in through a
    Slack Connect channel, cannot own a ticket". Dan (team T0EXT) is first known by email (staff
    opened a ticket for him), then writes in the Slack Connect channel: he is the same customer,
    whose organization came from his mail domain, and the check missed him."""
    running = Triage(start_service(intake_channels=(CONNECT,)))
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    card_posted(running, 1)
    running.emulator.user_post(DAN, CONNECT, "Printer down on floor 3")
    card_ts = card_posted(running, 2)
    with running.db.read() as session:
        # The same customer: the Slack ticket's requester is the one the email ticket has.
        requesters = set(session.scalars(select(Ticket.requester_id)))
    assert len(requesters) == 1
    # His record, asked for by mention, or by a typed @handle as `assign` takes one.
    for who in (f"<@{DAN}>", "@dan", "@Dan"):
        record = running.command(ALICE, f"customer {who}")
        assert record.startswith("*Dan Dorsey* (dan@globex.example") and "*Tickets* (2)" in record, record
    assert running.command(ALICE, "customer @nobody").startswith("I don't know who `@nobody` is")

    answer = running.command(ALICE, f"assign 2 <@{DAN}>")
    assert answer == "A customer cannot own a ticket.", answer
    # The card's assignee picker runs the same verb.
    running.emulator.user_block_action(ALICE, TRIAGE, card_ts, "ticket_assignee", DAN).wait(10)
    running.service.wait_for(
        lambda: any("cannot own a ticket" in str(p.body) for p in running.emulator.response_posts),
        "the refusal of the card press, privately",
    )
    assert running.ticket(2).assignee_slack_id is None
    assert running.ticket(1).assignee_slack_id is None


def test_a_page_past_the_end_says_so_instead_of_no_match(running: Triage) -> None:
    """`list page:N` / `search … page:N` past the last page answered "No tickets match." while
    tickets do match: a person reads it as an empty queue."""
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new erin@globex.example Printer again")
    assert "Showing 1–2 of 2" in running.command(ALICE, "list")
    for command in ("list page:2", "search printer page:3"):
        answer = running.command(ALICE, command)
        assert "No tickets match" not in answer, (command, answer)
        assert "2 in all" in answer, (command, answer)
    # Nothing matching at all still says so.
    assert running.command(ALICE, "search zebra").endswith("No tickets match.")


def test_a_subject_typed_over_several_lines_is_kept_as_one_line(running: Triage) -> None:
    """`!new` is a message, which may hold line breaks: the subject kept them, so the card's title
    broke over lines (the email's Subject header was folded safely, so no header was injected)."""
    running.command(ALICE, "new dan@globex.example Printer")
    running.service.post_as(
        ALICE, "!new gus@globex.example Line one\nBcc: evil@attacker.example", thread_ts=running.card_ts(1)
    )
    card_posted(running, 2)
    subject = running.ticket(2).subject
    assert subject == "Line one Bcc: evil@attacker.example", subject
    running.wait_card(2, "#2 Line one Bcc: evil@attacker.example")
    # A subject typed in quotes (straight or curly) is the words inside them: the quotes showed in
    # the customer's Subject line. Quotes inside a subject stay.
    typed = {
        '"Can\'t log in"': "Can't log in",
        "“VPN down”": "VPN down",
        "„Drucker kaputt“": "Drucker kaputt",
        '"A" or "B"': '"A" or "B"',
        'The "new" portal': 'The "new" portal',
    }
    for number, (words, subject) in enumerate(typed.items(), start=3):
        assert running.command(ALICE, f"new gus@globex.example {words}").startswith(f"Opened #{number}")
        assert running.ticket(number).subject == subject, (words, running.ticket(number).subject)


def test_a_search_of_many_words_is_refused_with_the_limit(running: Triage) -> None:
    """A pasted paragraph as `/desk search` built one condition per word; on PostgreSQL 250+ words
    ran past Slack's 3 s and the person got no answer at all. Such a search is refused at once,
    naming the limit; a search within it still runs."""
    running.command(ALICE, "new dan@globex.example Printer")
    words = " ".join(f"word{i}" for i in range(600))
    assert "at most 30 words" in running.command(ALICE, f"search {words}")
    within = " ".join(["printer"] * 30)
    assert running.command(ALICE, f"search {within}").startswith("*Tickets matching*")


def test_stats_do_not_count_a_duplicate_merged_away_as_a_repeat_request(running: Triage) -> None:
    """The card's "3rd ticket in 30 days" leaves out duplicates merged away (docs/triage.md);
    `/desk stats` counted the same duplicate as a repeat requester."""
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new dan@globex.example Printer (sent twice)")
    running.command(ALICE, "new erin@globex.example Laptop")
    assert "Repeat requesters: 1" in running.command(ALICE, "stats")  # before the merge: Dan twice
    assert running.command(ALICE, "merge 2 into 1").startswith("Merged #2 into #1")
    answer = running.command(ALICE, "stats")
    assert "Repeat requesters: 0" in answer, answer


def test_cc_add_past_the_participant_limit_says_so(start_service: StartService) -> None:
    """Staff adding one participant too many were told "already there, our own address, or too
    many", and the thread heard nothing: the answer must say the ticket is at its limit."""
    running = Triage(start_service(max_participants=1))
    running.command(ALICE, "new dan@globex.example Printer")
    assert running.command(ALICE, "cc 1 add zed@globex.example").startswith("Added zed@globex.example")
    answer = running.command(ALICE, "cc 1 add yan@globex.example")
    assert "SERVICEDESK_MAX_PARTICIPANTS" in answer, answer
    assert "already there" in running.command(ALICE, "cc 1 add zed@globex.example")
    assert "own address" in running.command(ALICE, "cc 1 add support@acme.test")
    with running.db.read() as session:
        assert sorted(session.scalars(select(Participant.email))) == [
            "dan@globex.example",
            "zed@globex.example",
        ]


def outbox_drained(running: Triage) -> None:
    """Every delivery written so far done (or given up): what the emulator shows is final."""

    def drained() -> bool:
        with running.db.read() as session:
            busy = session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.state.in_([OutboxState.PENDING, OutboxState.CLAIMED]))
            )
        return not busy

    running.service.wait_for(drained, "every delivery done")


def test_a_slack_customer_whose_two_threads_were_merged_hears_each_reply_once(
    start_service: StartService,
) -> None:
    """Dan posts twice in the Slack Connect channel (two tickets), staff merge the second into the
    first. His second thread is told "we'll continue there" (in #1's thread, which he already has);
    every later reply and notice was still posted into both of his threads: twice to one person.
    (Email does not do this: a participant already on the target stays behind, unused.)"""
    running = Triage(start_service(intake_channels=(CONNECT,)))
    first = running.emulator.user_post(DAN, CONNECT, "Printer down on floor 3")
    card_posted(running, 1)
    second = running.emulator.user_post(DAN, CONNECT, "Printer still down on floor 3!!")
    card_posted(running, 2)
    assert running.command(ALICE, "merge 2 into 1").startswith("Merged #2 into #1")
    running.service.post_as(ALICE, "A technician is on the way.", thread_ts=card_posted(running, 1))

    def dans_texts() -> list[str]:
        return [
            m.text or "" for ts in (first, second) for m in running.emulator.messages(CONNECT, thread_ts=ts)
        ]

    running.service.wait_for(
        lambda: any("on the way" in text for text in dans_texts()), "the reply in Dan's thread"
    )
    assert running.command(ALICE, "close 1").startswith("#1 is now closed")
    running.service.wait_for(
        lambda: any("is closed" in text for text in dans_texts()), "the close notice in Dan's thread"
    )
    running.wait_worker_idle()
    outbox_drained(running)
    texts = dans_texts()
    assert sum("on the way" in text for text in texts) == 1, texts
    assert sum("is closed" in text for text in texts) == 1, texts


def test_someone_from_another_organizations_workspace_cannot_own_a_ticket(running: Triage) -> None:
    """Erin is in Globex's workspace (a Slack Connect channel member who has not written in yet):
    `assign @erin` made an outsider the ticket's owner, shown on the card and in the thread."""
    running.command(ALICE, "new dan@globex.example Printer")
    answer = running.command(ALICE, f"assign 1 <@{ERIN}>")
    assert answer == "A customer cannot own a ticket.", answer
    assert running.ticket(1).assignee_slack_id is None


def test_a_command_on_a_missing_ticket_says_it_is_missing_before_the_usage(running: Triage) -> None:
    """`/desk link 999` (or `status 999`, `cc 999 add`…) for a ticket that does not exist answered
    with the verb's usage line: the person corrected the words, only to hear next that #999 does
    not exist. A missing ticket is named first, whatever else is wrong."""
    running.command(ALICE, "new dan@globex.example Printer")
    for command in (
        "link 999",
        "link 999 zz",
        "link 999 1 sideways",
        "unlink 999",
        "merge 999",
        "merge 999 into x",
        "status 999",
        "status 999 bogus",
        "priority 999 bogus",
        "assign 999",
        "label 999",
        "cc 999 add",
        "cc 999 frob x@example.com",
        "note 999",
        "close 999 now",
    ):
        assert running.command(ALICE, command) == "There is no ticket #999.", command
    # The ticket linked to, too.
    assert running.command(ALICE, "link 1 999 sideways") == "There is no ticket #999."
    # An existing ticket still gets the usage line.
    assert running.command(ALICE, "link 1").startswith("Something is missing. Usage: `/desk link")
    assert running.command(ALICE, "link 1 1 sideways").startswith("`sideways` is not a kind of link.")


def test_the_first_email_of_a_ticket_opened_for_a_customer_does_not_say_re(running: Triage) -> None:
    """`/desk new`: the first email the customer got said "Re: Printer [#1]", as if it answered a
    mail they never wrote. Later mail continues the conversation and says "Re:"."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(1))
    [first] = running.service.wait_for_mails(1)
    assert first.message["Subject"] == "Printer [#1]"
    assert first.message["In-Reply-To"] is None
    running.service.post_as(ALICE, "It works again.", thread_ts=running.card_ts(1))
    second = running.service.wait_for_mails(2)[1]
    assert second.message["Subject"] == "Re: Printer [#1]"
    assert second.message["In-Reply-To"] == first.message["Message-ID"]


def test_a_ticket_opened_for_a_customer_is_not_announced_before_anyone_wrote_to_them(
    running: Triage,
) -> None:
    """`/desk new` then `close` before anyone wrote to the customer mailed them a "closed" notice
    about a request they had never heard of (and the answer said "The customer is told.")."""
    assert running.command(ALICE, "new erin@globex.example Scanner").startswith("Opened #1")
    assert running.command(ALICE, "close 1") == "#1 is now closed."
    assert running.command(ALICE, "reopen 1") == "Reopened #1."
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #2")
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(2))
    [first] = running.service.wait_for_mails(1)
    # Once the desk has written to the customer, they hear of its closing.
    assert running.command(ALICE, "close 2") == "#2 is now closed. The customer is told."
    closed = running.service.wait_for_mails(2)[1]
    assert closed.message["In-Reply-To"] == first.message["Message-ID"]
    # Nor is a merge of such a ticket announced.
    assert running.command(ALICE, "new erin@globex.example Scanner again").startswith("Opened #3")
    assert running.command(ALICE, "merge 3 into 1") == (
        "Merged #3 into #1: its messages and participants moved there, and later replies to it land on #1."
    )
    running.wait_worker_idle()
    outbox_drained(running)
    assert [mail.rcpt_tos for mail in running.sink.messages] == [["dan@globex.example"]] * 2


def healthz(running: Triage) -> dict[str, object]:
    with urllib.request.urlopen(f"{running.service.http_url}/healthz", timeout=10) as answer:
        assert answer.status == 200
        return dict(json.loads(answer.read()))


def test_tickets_opened_while_the_triage_channel_is_archived_show_once_it_is_unarchived(
    running: Triage,
) -> None:
    """The triage channel archived: each new ticket's card failed (`is_archived`) with no thread to
    tell, the ticket stayed invisible to staff after the channel came back, and /healthz said all
    was well. Now the card is kept, /healthz names the problem, and the card (with what waits
    behind it) goes up once the channel is unarchived."""
    triage = running.emulator.workspace.channels[TRIAGE]
    triage.is_archived = True
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.command(ALICE, "note 1 called him, it is the fuser")

    def unreachable() -> str | None:
        said = str(healthz(running)["triage_channel"])
        return said if said.startswith("unreachable") else None

    said = running.service.wait_for(unreachable, "/healthz to say the triage channel is unreachable")
    assert "1 new ticket(s) wait for a card" in said and "the channel is archived" in said
    assert healthz(running)["ok"] is True  # the service itself still takes mail and events

    triage.is_archived = False
    running.wait_line(1, "called him, it is the fuser")
    assert healthz(running)["triage_channel"] == "ok"
    with running.db.read() as session:
        failed = session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.state == OutboxState.FAILED)
        )
    assert failed == 0


def test_what_an_existing_ticket_gets_while_the_triage_channel_is_archived_shows_once_it_is_back(
    running: Triage,
) -> None:
    """The triage channel archived after a ticket's card went up: the customer's next mail and a
    /desk note failed to reach the thread (`is_archived`), the thread line saying so failed too,
    and once the channel was unarchived neither was ever shown: staff never saw the customer's
    answer. Now they wait like new cards, /healthz counts them, and each goes up once, in order."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    card_posted(running, 1)
    triage = running.emulator.workspace.channels[TRIAGE]
    triage.is_archived = True
    key = running.ticket(1).reply_key
    answer = EmailMessage()
    answer["From"] = "Dan <dan@globex.example>"
    answer["To"] = f"support+{key}@acme.test"
    answer["Subject"] = "Printer"
    answer["Message-ID"] = make_msgid(domain="globex.example")
    answer.set_content("It jams on every second page.")
    assert running.service.send_mail(answer.as_bytes(policy=SMTP), mail_from="dan@globex.example")[0] == 250

    def waiting(count: int) -> str | None:
        said = str(healthz(running)["triage_channel"])
        return said if f"{count} post(s) wait for the channel" in said else None

    said = running.service.wait_for(lambda: waiting(1), "/healthz to count the customer's mail")
    assert said.startswith("unreachable") and "the channel is archived" in said
    running.command(ALICE, "note 1 called him, it is the fuser")
    running.service.wait_for(lambda: waiting(2), "/healthz to count the note queued behind it")

    triage.is_archived = False
    running.wait_line(1, "called him, it is the fuser")
    texts = running.thread_texts(1)
    jams = [n for n, text in enumerate(texts) if "It jams on every second page." in text]
    fuser = [n for n, text in enumerate(texts) if "called him, it is the fuser" in text]
    assert len(jams) == 1 and len(fuser) == 1 and jams[0] < fuser[0], texts
    assert not any("could not be shown" in text for text in texts), texts
    assert healthz(running)["triage_channel"] == "ok"
    with running.db.read() as session:
        failed = session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.state == OutboxState.FAILED)
        )
    assert failed == 0


def test_servicedesk_check_and_outbox_name_the_tickets_waiting_for_the_triage_channel(
    running: Triage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app removed from the triage channel: only /healthz said that new tickets wait for their
    cards; `servicedesk outbox` showed an ordinary pending row and `servicedesk check` did not say
    staff cannot see the tickets. Both now say so, with the count and the reason."""
    triage = running.emulator.workspace.channels[TRIAGE]
    bot = running.emulator.workspace.bot_user
    triage.members.remove(bot)
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.service.wait_for(
        lambda: str(healthz(running)["triage_channel"]).startswith("unreachable"), "the card to be kept"
    )

    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", running.service.settings.database_url)
    assert main(["outbox"]) == 0
    listed = capsys.readouterr().out
    assert "Waiting for the triage channel: 1 new ticket(s) wait for a card" in listed, listed
    assert "not a member of the channel" in listed, listed

    checked = io.StringIO()
    assert run_check(running.service.settings, out=checked) == 1
    said = checked.getvalue()
    assert "PROBLEM  waiting for the triage channel: 1 new ticket(s) wait for a card" in said, said
    assert "staff cannot see them" in said, said

    triage.members.append(bot)
    card_posted(running, 1)
    assert main(["outbox"]) == 0
    assert "Waiting for the triage channel" not in capsys.readouterr().out


def test_a_first_reply_deleted_before_it_was_mailed_does_not_start_the_mail_conversation(
    running: Triage,
) -> None:
    """`/desk new`, then a first reply the relay put off (451) and that staff deleted before it
    left: no mail reached the customer, yet its Message-ID stayed recorded as sent, so `close`
    answered "The customer is told." and mailed them a "closed" notice about a request they had
    never heard of, as a reply (In-Reply-To) to a mail they never got."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.sink.fail_next(1000, code=451)
    reply_ts = running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(1))

    def put_off() -> bool:
        with running.db.read() as session:
            row = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).one_or_none()
            return row is not None and row.state == OutboxState.PENDING and row.attempts >= 1

    running.service.wait_for(put_off, "the relay to put the first reply off")
    running.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    running.wait_worker_idle()
    running.sink.clear_faults()

    def settled() -> bool:
        with running.db.read() as session:
            row = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).one()
            return row.state == OutboxState.DONE

    running.service.wait_for(settled, "the deleted reply's mail to be settled")
    assert running.command(ALICE, "close 1") == "#1 is now closed."
    running.wait_worker_idle()
    outbox_drained(running)
    assert running.sink.messages == []


def test_a_first_reply_refused_for_good_does_not_start_the_mail_conversation(
    running: Triage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`/desk new` for an address the mail server refuses (5xx): the failed first reply counted as
    the desk having written, so `close` said "The customer is told." and its notice failed the same
    way. The conversation starts once a mail does go: after `servicedesk outbox --retry`, say."""
    running.sink.reject_recipient("dan@globex.example", 550)
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(1))

    def failed_mail() -> int | None:
        with running.db.read() as session:
            return session.scalar(
                select(Outbox.id).where(Outbox.kind == "email.send", Outbox.state == OutboxState.FAILED)
            )

    row_id = running.service.wait_for(failed_mail, "the refused first reply")
    assert running.command(ALICE, "close 1") == "#1 is now closed."
    assert running.command(ALICE, "reopen 1") == "Reopened #1."
    running.wait_worker_idle()
    outbox_drained(running)
    with running.db.read() as session:
        mails = session.scalars(select(Outbox.id).where(Outbox.kind == "email.send")).all()
    assert mails == [row_id]
    # Sent after all, it starts the conversation.
    running.sink.clear_faults()
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", running.service.settings.database_url)
    assert main(["outbox", "--retry", str(row_id)]) == 0
    capsys.readouterr()
    running.service.wait_for_mails(1)
    assert running.command(ALICE, "close 1") == "#1 is now closed. The customer is told."
    closed = running.service.wait_for_mails(2)[1]
    assert closed.rcpt_tos == ["dan@globex.example"]


def test_a_colleague_added_before_the_desk_wrote_hears_nothing_before_the_requester(
    running: Triage,
) -> None:
    """`/desk new` for Dan, then `cc add` of his colleague Erin before anyone wrote: Erin was mailed
    "You have been added to ticket #1" about a request Dan had never heard of, and that mail counted
    as the desk having written, so `close` then mailed Dan a "closed" notice out of the blue. Now
    both wait for the desk's first reply, which reaches them both."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    assert running.command(ALICE, "cc 1 add erin@globex.example").startswith("Added erin@globex.example")
    assert running.command(ALICE, "close 1") == "#1 is now closed."
    running.wait_worker_idle()
    outbox_drained(running)
    assert running.sink.messages == []
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(1))
    mails = running.service.wait_for_mails(2)
    assert sorted(rcpt for mail in mails for rcpt in mail.rcpt_tos) == [
        "dan@globex.example",
        "erin@globex.example",
    ]
    assert all(
        "we are on it" in mail.message.get_body(preferencelist=("plain",)).get_content() for mail in mails
    )


def test_a_reply_delivered_while_the_triage_channel_is_archived_shows_its_receipt_once_it_is_back(
    start_service: StartService,
) -> None:
    """A staff reply went out by email while the triage channel was archived: Slack refuses
    reactions there too (`is_archived`), so its receipt failed, the warning line about that waited
    for the channel, and once it was back the reply showed as still on its way (⏳, never ✅) with
    a line saying a mark could not be set. The receipt now waits for the channel like posts do."""
    # The channel is archived while the reply waits out its delay: a delay long enough that the
    # pending mark is seen before delivery replaces it, however busy the machine.
    running = Triage(start_service(reply_delay_seconds=3))
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    reply_ts = running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=running.card_ts(1))
    running.service.wait_for(
        lambda: "hourglass_flowing_sand" in running.emulator.message(TRIAGE, reply_ts).reactions,
        "the reply's pending mark",
    )
    triage = running.emulator.workspace.channels[TRIAGE]
    triage.is_archived = True
    # The emulator takes reactions in archived channels; Slack answers them `is_archived`.
    for method in ("reactions.add", "reactions.remove"):
        running.emulator.add_fault(method, Fault.slack_error("is_archived"), channel=TRIAGE, times=None)
    running.service.wait_for_mails(1)
    running.service.wait_for(
        lambda: "post(s) wait for the channel" in str(healthz(running)["triage_channel"]),
        "the receipt to wait for the channel",
    )
    running.emulator.clear_faults()
    triage.is_archived = False
    running.service.wait_for(
        lambda: "white_check_mark" in running.emulator.message(TRIAGE, reply_ts).reactions,
        "the reply's delivered mark",
    )
    running.wait_worker_idle()
    outbox_drained(running)
    assert not any("Couldn't mark" in text for text in running.thread_texts(1))


def test_a_command_typed_in_formatting_is_never_sent_and_its_author_is_shown_how_to_run_it(
    running: Triage,
) -> None:
    """`*!close*`, `_!note_ …` or `` `!priority high` `` in a thread was taken as a public reply
    and mailed to the customer. Staff meant a command: it is not sent, not run (what the formatting
    hides is not guessed at), and its author is shown the command to type."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    card_ts = running.card_ts(1)
    typed = ["*!close*", "_!note_ the driver is old", "`!priority high`", "~!assign me~"]
    for text in typed:
        running.emulator.user_post(ALICE, TRIAGE, text, thread_ts=card_ts)

    def hints() -> list[str] | None:
        found = [e.text for e in running.emulator.ephemerals(TRIAGE, ALICE) if "formatting" in e.text]
        return found if len(found) == len(typed) else None

    shown = running.service.wait_for(hints, "a hint for each formatted command")
    for plain in ["`!close`", "`!note the driver is old`", "`!priority high`", "`!assign me`"]:
        assert any(plain in hint for hint in shown), (plain, shown)
    running.wait_worker_idle()
    ticket = running.ticket(1)
    assert (ticket.status, ticket.priority, ticket.assignee_slack_id) == ("open", "normal", None)
    with running.db.read() as session:
        assert session.scalars(select(Message).where(Message.direction == "outbound")).all() == []
    # The thread still works as before: a plain reply goes, a plain command runs.
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=card_ts)
    [mail] = running.service.wait_for_mails(1)
    assert "we are on it" in mail.message.get_body(("plain",)).get_content()
    running.emulator.user_post(ALICE, TRIAGE, "!priority high", thread_ts=card_ts)
    running.service.wait_for(lambda: running.ticket(1).priority == "high", "priority high")
    assert len(running.sink.messages) == 1


def test_a_card_deleted_in_slack_is_posted_again_in_its_thread_on_the_next_change(
    running: Triage,
) -> None:
    """A card deleted in Slack (by a workspace admin) never came back: every later change added
    another failed card row, and staff had no card to triage from. The next change posts it again
    in the ticket's thread, later changes update that copy, and the thread still works."""
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    card_ts = running.card_ts(1)
    running.service.post_as(ALICE, "Hello Dan, we are on it.", thread_ts=card_ts)
    running.service.wait_for_mails(1)
    running.wait_worker_idle()
    with running.emulator.state.lock:
        running.emulator.state.workspace.users[ALICE].is_admin = True
    running.emulator.user_delete(ALICE, TRIAGE, card_ts)

    def cards_in_thread() -> list[str]:
        """The desk's posts in the thread with the card's menus."""
        return [
            m.ts
            for m in running.service.thread(card_ts)
            if m.bot_id and any(b.get("type") == "actions" for b in m.blocks or [])
        ]

    assert running.command(ALICE, "priority 1 high").startswith("#1")
    [again] = running.service.wait_for(cards_in_thread, "the card again, in its thread")
    running.service.wait_for(
        lambda: "High" in message_text(running.emulator.message(TRIAGE, again)), "the new priority on it"
    )
    # Its menus work, and later changes update that card rather than posting another.
    running.emulator.user_block_action(ALICE, TRIAGE, again, "ticket_assignee", ALICE).wait(10)
    assert running.ticket(1).assignee_slack_id == ALICE
    running.service.wait_for(
        lambda: "Assignee: <@U0ALICE>" in message_text(running.emulator.message(TRIAGE, again)),
        "the assignee on the card in the thread",
    )
    running.wait_worker_idle()
    assert cards_in_thread() == [again]
    # Deleted again, it comes back again; no card row is left failed.
    running.emulator.user_delete(ALICE, TRIAGE, again)
    running.command(ALICE, "priority 1 urgent")
    running.service.wait_for(lambda: len(cards_in_thread()) == 2, "the card once more")
    running.wait_worker_idle()
    with running.db.read() as session:
        failed = session.scalars(select(Outbox.last_error).where(Outbox.state == OutboxState.FAILED)).all()
    assert failed == []
    # The thread is still the ticket's: a reply there reaches the customer.
    running.service.post_as(ALICE, "Fixed now.", thread_ts=card_ts)
    assert "Fixed now." in running.service.wait_for_mails(2)[1].message.get_body(("plain",)).get_content()


def test_a_quoted_search_finds_the_phrase_whatever_the_quotes(running: Triage) -> None:
    """People quote what they search for, and Slack's editor or their keyboard may curl the quotes:
    `search "printer on"` (or “printer on”) answered "No tickets match" for a ticket named "Printer
    on fire", the quotes being searched for as part of the words."""
    running.command(ALICE, "new dan@globex.example Printer on fire")
    running.command(ALICE, "new erin@globex.example Fire on the printer")
    for words in ('"printer on"', "“printer on”", "„Printer ON“", "“printer”   fire", "‘printer’ on"):
        answer = running.command(ALICE, f"search {words}")
        assert "Showing 1–" in answer, (words, answer)
    # A phrase keeps its words in order: only #1 says "printer on".
    assert "Showing 1–1 of 1" in running.command(ALICE, 'search "printer  on"')
    assert "Showing 1–2 of 2" in running.command(ALICE, "search printer on")
    assert running.command(ALICE, 'search ""').startswith("Search for what?")


def test_search_is_blind_to_case_beyond_a_to_z(running: Triage) -> None:
    """`search münchen` did not find "DRUCKER IN MÜNCHEN" on SQLite, whose lower() changes only
    A-Z (PostgreSQL found it): the docs promise any case."""
    running.command(ALICE, "new dan@globex.example DRUCKER IN MÜNCHEN")
    running.command(ALICE, "new erin@globex.example Printer in Berlin")
    for words in ("münchen", "MÜNCHEN", "München drucker", '"in münchen"'):
        assert "Showing 1–1 of 1" in running.command(ALICE, f"search {words}"), words


def test_cc_takes_addresses_pasted_as_a_list(running: Triage) -> None:
    """Addresses pasted from a mail's Cc line come with commas, each one auto-linked by Slack:
    `cc 1 add <mailto:a@…|a@…>, <mailto:b@…|b@…>` was refused as "`,` is not an email address"."""
    running.command(ALICE, "new dan@globex.example Printer")
    a, b, c = "ann@globex.example", "ben@globex.example", "cy@globex.example"
    answer = running.command(ALICE, f"cc 1 add <mailto:{a}|{a}>, <mailto:{b}|{b}>;{c}")
    assert answer.startswith(f"Added {a}, {b}, {c} to #1"), answer
    card_ts = running.card_ts(1)
    running.service.post_as(ALICE, f"!cc remove {a},{b} ;", thread_ts=card_ts)
    removed = f"Removed {a}, {b} from #1"
    running.service.wait_for(
        lambda: any(removed in e.text for e in running.emulator.ephemerals(TRIAGE, ALICE)),
        "the removal, privately",
    )
    assert running.command(ALICE, "cc 1 add ,").startswith("Which address?")
    with running.db.read() as session:
        emails = session.scalars(select(Participant.email)).all()
    assert sorted(emails) == [c, "dan@globex.example"]


def test_an_international_domain_names_one_person_in_either_form(running: Triage) -> None:
    """`bücher.example` is `xn--bcher-kva.example` (RFC 5890): a customer or participant written
    one way was not found, nor removed, written the other."""
    assert running.command(ALICE, "new bob@BÜCHER.example Printer").startswith("Opened #1")
    assert running.command(ALICE, "cc 1 add ann@xn--bcher-kva.example").startswith("Added")
    assert "already there" in running.command(ALICE, "cc 1 add ann@bücher.example")
    record = running.command(ALICE, "customer bob@bücher.example")
    assert "*Tickets* (1)" in record, record
    assert running.command(ALICE, "cc 1 remove ann@bücher.example").startswith("Removed")
    with running.db.read() as session:
        emails = session.scalars(select(Participant.email)).all()
    assert emails == ["bob@xn--bcher-kva.example"]


def test_list_filters_combine_or_say_why_they_cannot(running: Triage) -> None:
    """`list status:open status:closed` listed only the closed tickets (the last `status:` replaced
    the others), `list label:bug label:hw` only those labelled hw, and `list mine unassigned`
    answered "No tickets match" for a filter no ticket can meet."""
    running.command(ALICE, "new dan@globex.example Printer")
    running.command(ALICE, "new erin@globex.example Laptop")
    running.command(ALICE, "label-create bug")
    running.command(ALICE, "label-create hw")
    running.command(ALICE, "label 1 +bug")
    running.command(ALICE, "close 2")
    running.command(ALICE, "assign 1 me")
    both = running.command(ALICE, "list status:open status:closed")
    assert both.startswith("*Open and closed tickets*") and "Showing 1–2 of 2" in both, both
    assert "Showing 1–1 of 1" in running.command(ALICE, "list mine label:bug label:bug status:all")
    assert running.command(ALICE, "list label:bug label:hw").startswith("One `label:` at a time.")
    assert running.command(ALICE, "list mine unassigned").startswith("A ticket cannot be both")
    # The page is a word like the filters, wherever it is typed.
    assert "No tickets on this page: 1 in all" in running.command(ALICE, "list page:2 mine")


def test_a_label_name_typed_in_quotes_is_the_name_inside_them(running: Triage) -> None:
    """`label-create “needs-info”` made a label named with its quotes, which `+needs-info` then did
    not find; quotes, straight or curly, are now never part of a label's name."""
    running.command(ALICE, "new dan@globex.example Printer")
    assert running.command(ALICE, "label-create “needs-info” red").startswith(
        "Created the label needs-info (red)"
    )
    assert running.command(ALICE, 'label 1 +"needs-info"') == "#1's labels: needs-info."
    assert running.command(ALICE, 'label 1 "-needs-info"') == "#1's labels: none."
    assert running.command(ALICE, "label-create 'needs-info'").startswith("Label needs-info exists already")
