"""The machinery of the demo's story: a scene where people act and the desk is watched.

`Scene` plays a list of steps and records what each produced; it reads the emulator, the store
and the sink, and acts as people do (an email through SMTP, a slash command through the
emulator). Waiting is always on a condition (`Stage.until`); a promise the product does not keep
in time is a `StepFailed` naming it, recorded as the story's failure — never hidden.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from bot.demo_stage import Stage, StepFailed
from bot.demo_store import TicketFacts
from bot.demo_transcript import block_lines, plain_text
from sandbox.mail_sink import ReceivedMail
from sandbox.state import Message
from sandbox.workspace import ALICE, TRIAGE

STATUS = re.compile(r"Status: (\w+)")
# The marks a product may put on a staff reply once it reached the customer (Slack's own names).
DELIVERED_MARKS = frozenset({"white_check_mark", "heavy_check_mark", "ballot_box_with_check"})
Step = Callable[["StepRecord"], None]


@dataclass
class StepRecord:
    title: str
    results: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class StoryRecord:
    steps: list[StepRecord] = field(default_factory=list)
    # The status words each card showed, in the order the story saw them change.
    card_statuses: dict[int, list[str]] = field(default_factory=dict)
    failure: str | None = None  # "<step title>: <what did not happen>"
    reason: str | None = None  # just what did not happen
    email_ticket: int | None = None
    slack_ticket: int | None = None
    seconds: float = 0.0


class Scene:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.emulator = stage.emulator
        self.workspace = stage.emulator.workspace
        self.record = StoryRecord()
        self.on_start: Callable[[str], None] | None = None
        self.on_step: Callable[[StepRecord], None] | None = None

    def steps(self) -> list[tuple[str, Step]]:
        raise NotImplementedError

    def play(self) -> StoryRecord:
        started = time.monotonic()
        for title, step in self.steps():
            record = StepRecord(title)
            if self.on_start is not None:
                self.on_start(title)
            began = time.monotonic()
            try:
                step(record)
            except StepFailed as failure:
                if self.stage.interrupted.is_set():
                    # Ctrl-C, whose exception a library turned into its own error (smtplib's QUIT,
                    # on the way out, reads the answer the interrupt cut short): a stop, no bug.
                    raise KeyboardInterrupt from failure
                self.record.failure = f"{title}: {failure}"
                self.record.reason = str(failure)
            record.seconds = time.monotonic() - began
            self.record.steps.append(record)
            if self.on_step is not None:
                self.on_step(record)  # what a failed step did achieve is shown too
            if self.record.failure is not None:
                break
        self.record.seconds = time.monotonic() - started
        return self.record

    # ----- reading the emulator, the store and the sink -----

    def ticket(self, number: int | None) -> TicketFacts | None:
        return None if number is None else self.stage.store.ticket(number)

    def card(self, number: int | None) -> Message | None:
        ticket = self.ticket(number)
        if ticket is None or ticket.triage_ts is None:
            return None
        try:
            return self.emulator.message(TRIAGE, ticket.triage_ts)
        except KeyError:
            return None

    def card_words(self, number: int | None) -> str:
        card = self.card(number)
        if card is None:
            return ""
        return plain_text("\n".join(block_lines(card.blocks or [])) or card.text, self.workspace)

    def card_status(self, number: int | None) -> str | None:
        found = STATUS.search(self.card_words(number))
        status = found.group(1) if found else None
        if number is not None and status is not None:
            seen = self.record.card_statuses.setdefault(number, [])
            if not seen or seen[-1] != status:
                seen.append(status)
        return status

    def thread(self, channel: str, ts: str | None) -> list[Message]:
        return [] if ts is None else self.emulator.messages(channel, ts)

    def bot_replies(self, channel: str, ts: str | None) -> list[Message]:
        return [m for m in self.thread(channel, ts)[1:] if m.bot_id is not None and not m.deleted]

    def mails_to(self, address: str, after: int = 0) -> list[ReceivedMail]:
        return [m for m in self.stage.mails()[after:] if address in (r.lower() for r in m.rcpt_tos)]

    def delivery_of(self, ts: str) -> str | None:
        found = [m.delivery for m in self.stage.store.messages() if m.slack_ts == ts]
        return found[0] if found else None

    def reactions_on(self, channel: str, ts: str) -> str:
        names = self.emulator.message(channel, ts).reactions
        return ", ".join(f":{name}:" for name in names) or "no reaction"

    def send_mail(self, mail: EmailMessage) -> None:
        """Through the real SMTP intake, as a customer's mail server would deliver it."""
        try:
            with smtplib.SMTP("127.0.0.1", self.stage.smtp_port, timeout=20) as smtp:
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as error:
            raise StepFailed(f"the SMTP intake did not accept the email: {error}") from error

    def run_command(self, text: str) -> str:
        interaction = self.emulator.user_command(ALICE, TRIAGE, "/desk", text)
        try:
            interaction.wait(self.stage.step_timeout)
        except TimeoutError as error:
            raise StepFailed(f"/desk {text} got no answer") from error
        answer = (interaction.ack_payload or {}).get("text")
        if answer is None:
            posts = [p for p in self.emulator.response_posts if p.response_url == interaction.response_url]
            answer = posts[-1].body.get("text") if posts else None
        return plain_text(str(answer or "(no answer shown)"), self.workspace)

    # ----- waiting for the desk -----

    def wait_delivered(self, record: StepRecord, ts: str) -> None:
        self.stage.until(
            "the staff reply marked delivered in the store and in the thread",
            lambda: (
                self.delivery_of(ts) == "delivered"
                and DELIVERED_MARKS & set(self.emulator.message(TRIAGE, ts).reactions)
            ),
        )
        record.results.append(f"marked delivered ({self.reactions_on(TRIAGE, ts)})")

    def settle(self) -> None:
        """Wait until everything the last action caused was delivered, so the threads read in order."""
        self.stage.until(
            "every delivery done",
            lambda: self.stage.store.outbox_unfinished() == 0 and self.emulator.pending == 0,
        )


NO_TICKET = TicketFacts(0, "", "", "", "", "", None, (), "", None, None, None)


def text_of(part: EmailMessage) -> str:
    """The decoded text of a part (or a message's text part); empty for anything else."""
    if part.is_multipart():
        body = part.get_body(preferencelist=("plain",))
        return text_of(body) if isinstance(body, EmailMessage) else ""
    if part.get_content_maintype() != "text":
        return ""
    content = part.get_content()
    return content if isinstance(content, str) else ""
