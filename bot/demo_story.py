"""The story the demo plays: people act (by email, in Slack, with `/desk`), the desk answers.

Each step acts the way a person would — an email through SMTP into the intake, a Slack message
or slash command through the emulator, delivered signed to the service — then waits for what the
product promises (a row in the store, a post in a thread, a mail at the relay). The machinery
(waiting, reading, recording) is `bot.demo_scene`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid

from bot.demo_scene import NO_TICKET, Scene, Step, StepRecord, text_of
from bot.demo_stage import SUPPORT_ADDRESS, Stage, StepFailed
from bot.demo_transcript import plain_text
from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE

PAT = "Pat Lee <pat@initech.example>"
PAT_ADDRESS = "pat@initech.example"
PAT_SUBJECT = "Invoice PDF will not open"
PAT_TEXT = (
    "Hello,\n\nthe invoice you sent this morning (attached) will not open: my PDF reader says the"
    " file is damaged. Could you send it again?\n\nThanks,\nPat"
)
# A small PDF that opens: one empty page.
INVOICE_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>"
    b"endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
DAN_TEXT = "Our dashboard shows *no data* since this morning :cry: Is something down?"
REPLY_TO_PAT = (
    "Hi Pat, sorry about that! The invoice was built with an old template. Here is a *corrected copy*;"
    " the details are also on https://billing.acme.example/invoices"
)
REPLY_TO_DAN = (
    "Hi Dan, we found it: a stuck import job. It is restarted and your data is back within 5 minutes."
)
NOTE_WORDS = "Pat is on the legacy billing plan, do not offer the new pricing yet"
NOTE = f"note: {NOTE_WORDS}"
PAT_FOLLOW_UP = "Thanks, that copy opens. But the VAT number on it is still the old one."
SAM = "Sam Ortiz <sam@initech.example>"
SAM_ADDRESS = "sam@initech.example"


class Story(Scene):
    """Pat (email, with Sam in Cc) and Dan (Slack Connect) ask; alice answers and triages."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(stage)
        self.dan_ts: str | None = None

    # ----- what the story runs -----

    def steps(self) -> list[tuple[str, Step]]:
        return [
            (f"Pat emails {SUPPORT_ADDRESS}, Cc Sam, with invoice.pdf attached", self.customer_emails),
            ("Dan (Globex) posts in the Slack Connect channel #globex-support", self.customer_posts),
            ("alice replies in ticket #1's thread, attaching a file", self.staff_replies_by_email),
            ("alice replies in ticket #2's thread", self.staff_replies_in_slack),
            ("alice writes an internal note in ticket #1's thread", self.staff_writes_note),
            ("alice runs /desk label-create billing, then /desk label 1 +billing", self.staff_labels),
            ("alice runs /desk assign 1 @alice", self.staff_assigns),
            ("alice types !close in ticket #1's thread", self.staff_closes_by_email),
            ("alice runs /desk close 2", self.staff_closes_in_slack),
            ("Pat answers the last email", self.customer_reopens),
            ("every delivery settles; the note went nowhere", self.nothing_leaked),
        ]

    # ----- the steps -----

    def customer_emails(self, record: StepRecord) -> None:
        mail = EmailMessage()
        mail["From"] = PAT
        mail["To"] = SUPPORT_ADDRESS
        mail["Cc"] = SAM
        mail["Subject"] = PAT_SUBJECT
        mail["Message-ID"] = make_msgid(domain="initech.example")
        mail.set_content(PAT_TEXT)
        mail.add_attachment(INVOICE_PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
        self.send_mail(mail)
        record.results.append(f"SMTP intake on port {self.stage.smtp_port} accepted it (250)")
        ticket = self.stage.until(
            "a ticket from Pat's email with its card in #triage",
            lambda: next(
                (t for t in self.stage.store.tickets() if t.requester == PAT_ADDRESS and t.triage_ts), None
            ),
        )
        self.record.email_ticket = ticket.number
        self.stage.until(f"the card of #{ticket.number} in #triage", lambda: self.card(ticket.number))
        self.card_status(ticket.number)
        record.results.append(f"ticket #{ticket.number} opened; its card and thread are in #triage")
        self.stage.until(
            "invoice.pdf uploaded into the ticket's thread",
            lambda: any(
                self.emulator.files[f].name == "invoice.pdf"
                for m in self.thread(TRIAGE, ticket.triage_ts)
                for f in m.files
            ),
        )
        record.results.append("invoice.pdf is in the thread")
        [ack] = self.stage.until("the acknowledgement email to Pat", lambda: self.mails_to(PAT_ADDRESS)[:1])
        record.results.append(f"acknowledgement emailed to Pat: {ack.message['Subject']}")

    def customer_posts(self, record: StepRecord) -> None:
        self.dan_ts = ts = self.emulator.user_post(DAN, CONNECT, DAN_TEXT)
        ticket = self.stage.until(
            "a ticket from Dan's Slack message with its card in #triage",
            lambda: next(
                (t for t in self.stage.store.tickets() if t.origin_thread_ts == ts and t.triage_ts), None
            ),
        )
        self.record.slack_ticket = ticket.number
        self.stage.until(f"the card of #{ticket.number} in #triage", lambda: self.card(ticket.number))
        self.card_status(ticket.number)
        record.results.append(f"ticket #{ticket.number} opened; its card and thread are in #triage")
        [ack] = self.stage.until(
            "an acknowledgement in Dan's thread", lambda: self.bot_replies(CONNECT, ts)[:1]
        )
        record.results.append(f"in Dan's thread: {plain_text(ack.text, self.workspace)}")

    def staff_replies_by_email(self, record: StepRecord) -> None:
        ticket = self.ticket(self.record.email_ticket)
        assert ticket is not None
        before = len(self.stage.mails())
        ts = self.emulator.user_post(
            ALICE,
            TRIAGE,
            REPLY_TO_PAT,
            thread_ts=ticket.triage_ts,
            files=[("invoice-corrected.pdf", INVOICE_PDF)],
        )
        [mail] = self.stage.until(
            "alice's reply emailed to Pat", lambda: self.mails_to(PAT_ADDRESS, after=before)[:1]
        )
        record.results.append(f"emailed to Pat after the reply delay; Reply-To {mail.message['Reply-To']}")
        if SAM_ADDRESS not in mail.rcpt_tos:
            self.stage.until(
                "alice's reply emailed to Sam (Cc on Pat's email)",
                lambda: self.mails_to(SAM_ADDRESS, after=before)[:1],
            )
        record.results.append("and to Sam, a participant since Pat's Cc, in a transaction of its own")
        self.wait_delivered(record, ts)

    def staff_replies_in_slack(self, record: StepRecord) -> None:
        ticket = self.ticket(self.record.slack_ticket)
        assert ticket is not None
        known = len(self.bot_replies(CONNECT, self.dan_ts))
        ts = self.emulator.user_post(ALICE, TRIAGE, REPLY_TO_DAN, thread_ts=ticket.triage_ts)
        [post] = self.stage.until(
            "alice's reply posted in Dan's thread", lambda: self.bot_replies(CONNECT, self.dan_ts)[known:]
        )
        if post.username != "alice" or not post.icon_url:
            raise StepFailed(
                f"alice's reply was posted under {post.username!r} (icon {post.icon_url!r}), not alice's name"
            )
        record.results.append("posted in Dan's thread under alice's name and picture")
        self.wait_delivered(record, ts)

    def staff_writes_note(self, record: StepRecord) -> None:
        ticket = self.ticket(self.record.email_ticket)
        assert ticket is not None
        ts = self.emulator.user_post(ALICE, TRIAGE, NOTE, thread_ts=ticket.triage_ts)
        self.stage.until(
            "the note marked as a note in the thread",
            lambda: self.emulator.message(TRIAGE, ts).reactions,
        )
        self.stage.until(
            "the note stored as internal",
            lambda: any(m.slack_ts == ts and m.visibility == "internal" for m in self.stage.store.messages()),
        )
        record.results.append(f"marked at once ({self.reactions_on(TRIAGE, ts)}); stored as internal")

    def staff_labels(self, record: StepRecord) -> None:
        number = self.record.email_ticket
        record.results.append(f"only alice sees: {self.run_command('label-create billing')}")
        record.results.append(f"only alice sees: {self.run_command(f'label {number} +billing')}")
        self.stage.until(
            f"the label billing on #{number} and its card",
            lambda: (
                "billing" in (self.ticket(number) or NO_TICKET).labels
                and "billing" in self.card_words(number)
            ),
        )
        record.results.append(f"card #{number} updated: Labels: billing")
        self.settle()

    def staff_assigns(self, record: StepRecord) -> None:
        number = self.record.email_ticket
        # `/desk` is declared with should_escape, so Slack sends the mention as <@U…|name>.
        record.results.append(f"only alice sees: {self.run_command(f'assign {number} <@{ALICE}|alice>')}")
        self.stage.until(
            f"#{number} assigned to alice, on its card",
            lambda: (
                (self.ticket(number) or NO_TICKET).assignee_slack_id == ALICE
                and "Assignee: @alice" in self.card_words(number)
            ),
        )
        record.results.append(f"card #{number} updated: Assignee: @alice")
        self.settle()

    def staff_closes_by_email(self, record: StepRecord) -> None:
        ticket = self.ticket(self.record.email_ticket)
        assert ticket is not None
        before = len(self.stage.mails())
        self.emulator.user_post(ALICE, TRIAGE, "!close", thread_ts=ticket.triage_ts)
        self.stage.until(f"#{ticket.number} closed", lambda: self.card_status(ticket.number) == "Closed")
        record.results.append(f"card #{ticket.number} updated: Status: Closed")
        [told] = self.stage.until("Pat told by email", lambda: self.mails_to(PAT_ADDRESS, after=before)[:1])
        self.settle()
        told_to = sorted({r for mail in self.stage.mails()[before:] for r in mail.rcpt_tos})
        record.results.append(f"told by email ({', '.join(told_to)}): {told.message['Subject']}")

    def staff_closes_in_slack(self, record: StepRecord) -> None:
        number = self.record.slack_ticket
        known = len(self.bot_replies(CONNECT, self.dan_ts))
        record.results.append(f"only alice sees: {self.run_command(f'close {number}')}")
        self.stage.until(f"#{number} closed", lambda: self.card_status(number) == "Closed")
        record.results.append(f"card #{number} updated: Status: Closed")
        [told] = self.stage.until(
            "Dan told in his thread", lambda: self.bot_replies(CONNECT, self.dan_ts)[known:]
        )
        record.results.append(f"in Dan's thread: {plain_text(told.text, self.workspace)}")
        self.settle()

    def customer_reopens(self, record: StepRecord) -> None:
        number = self.record.email_ticket
        ticket = self.ticket(number)
        assert ticket is not None
        last = self.mails_to(PAT_ADDRESS)[-1].message
        reply = EmailMessage()
        reply["From"] = PAT
        reply["To"] = str(last["Reply-To"] or SUPPORT_ADDRESS)
        reply["Subject"] = f"Re: {last['Subject']}"
        reply["Message-ID"] = make_msgid(domain="initech.example")
        reply["In-Reply-To"] = str(last["Message-ID"])
        reply["References"] = str(last["Message-ID"])
        quoted = "\n".join("> " + line for line in text_of(last).splitlines())
        # What a mail client writes above the quote (Gmail's form), which the desk trims.
        sent = last["Date"].datetime if last["Date"] is not None else datetime.now(UTC)
        attribution = f"On {sent:%a, %b %d, %Y at %H:%M}, {last['From']} wrote:"
        reply.set_content(f"{PAT_FOLLOW_UP}\n\nPat\n\n{attribution}\n{quoted}\n")
        self.send_mail(reply)
        self.stage.until(f"#{number} reopened", lambda: self.card_status(number) == "Open")
        record.results.append(f"card #{number} updated: Status: Open")
        [answer] = self.stage.until(
            "Pat's answer in the ticket's thread",
            lambda: [m for m in self.thread(TRIAGE, ticket.triage_ts) if "VAT number" in m.text][:1],
        )
        trimmed = "wrote:" not in answer.text and "corrected copy" not in answer.text
        record.results.append(
            "Pat's answer is in the thread, "
            + ("the quoted history trimmed" if trimmed else "with the quote")
        )

    def nothing_leaked(self, record: StepRecord) -> None:
        self.settle()
        failed = self.stage.store.failed_deliveries()
        if failed:
            raise StepFailed(f"{len(failed)} deliveries failed: {'; '.join(failed)}")
        for mail in self.stage.mails():
            if any(NOTE_WORDS in text_of(part) for part in mail.message.walk() if not part.is_multipart()):
                raise StepFailed(f"the note reached {', '.join(mail.rcpt_tos)} by email")
        for message in self.thread(CONNECT, self.dan_ts):
            if NOTE_WORDS in message.text:
                raise StepFailed("the note was posted in Dan's thread")
        record.results.append(
            f"{len(self.stage.mails())} emails and Dan's thread checked: the note is in none of them"
        )
