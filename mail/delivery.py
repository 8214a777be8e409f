"""Outbound email: one `email.send` outbox row becomes one SMTP transaction through the relay.

The row was written by `store.actions.common.enqueue_emails` with everything that must not change
between attempts (recipient, Message-ID, In-Reply-To, References); what may change until the mail
leaves (a staff reply's body, edited inside the undo window; a participant who unsubscribed) is
read when the row runs. The database is read in one short transaction, the mail is composed outside
it, and nothing talks SMTP while a transaction is open.

Outcomes: delivered -> Done; 4xx, no answer or an unusable relay -> Retry (the outbox backs off
until the row's deadline); 5xx -> Fail, and the worker says so in the ticket's thread. A reply
cancelled, deleted or made a note before it left, and a recipient who unsubscribed or bounced
meanwhile, are skipped (Done, nothing sent). A send still waiting on the relay when the worker stops
has no outcome: its task is cancelled, the pool cuts the connection off (mail/relay_pool.py), and
the worker gives the row back, as after a crash.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Row, Select, String, and_, bindparam, select
from sqlalchemy.orm import Session

from mail.compose import (
    MAX_ATTACHED_BYTES,
    OutboundAttachment,
    OutboundMail,
    clean_header_value,
    compose,
    compose_attachments_within,
    safe_filename,
)
from mail.links import attachment_url, unsubscribe_url
from mail.relay import SETTING as RELAY_SETTING
from mail.relay import DeliveryStatus, RelayConfig, RelayConnection, SendResult
from mail.relay_pool import RelayPool
from mail.render import render_markdown
from mail.templates import (
    NO_SUBJECT,
    REPLY_PREFIX_RE,
    TemplateContext,
    TemplateError,
    Templates,
    load_templates,
    validate_templates,
)
from mail.templates import SETTING as TEMPLATES_SETTING
from store import outbox
from store.actions.tickets import follow_merges
from store.context import Desk
from store.files import size_words
from store.intake_keys import bounce_address, link_secret, reply_address, unsubscribe_address
from store.models import Delivery, Message, Participant, Ticket, Visibility
from store.outbox import FILES_NOT_ATTACHED, OutboxItem
from store.outcomes import Apply, Done, Fail, Outcome, Retry
from store.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# RFC 3834 section 5: the acknowledgement answers a person's mail (auto-replied); notices the desk
# sends on its own (status changes, "you were added") are auto-generated; a staff reply is a person's.
AUTO_SUBMITTED = {
    "acknowledgement": "auto-replied",
    "staff_reply": None,
    "new_participant": "auto-generated",
    "resolved": "auto-generated",
    "closed": "auto-generated",
    "reopened": "auto-generated",
    "merged": "auto-generated",
}


def delivery_settings_problems(settings: Settings) -> list[str]:
    """What is wrong with the settings outbound mail needs: one line each, naming the setting."""
    problems = []
    try:
        RelayConfig.from_url(settings.smtp_relay_url)
    except ValueError as exc:
        problems.append(str(exc))
    try:
        validate_templates(settings.templates_dir)
    except TemplateError as exc:
        problems.append(f"{TEMPLATES_SETTING}: {exc}")
    return problems


# How long `servicedesk check` waits on the relay at each step: a relay that answers at all answers in
# seconds, and the relay URL's own timeout (a minute by default) is too long for a person waiting.
RELAY_PROBE_TIMEOUT_SECONDS = 10.0


def relay_problem(settings: Settings) -> str | None:
    """Whether the relay takes our session as a delivery would open it (connect, EHLO, STARTTLS, AUTH)
    and the support address as sender (MAIL FROM, then RSET), sending nothing: None, or one line
    naming the setting and the stage that failed. The URL must
    be well-formed (`delivery_settings_problems` first); its password is never shown."""
    config = RelayConfig.from_url(settings.smtp_relay_url)
    config = replace(config, timeout=min(config.timeout, RELAY_PROBE_TIMEOUT_SECONDS))
    with RelayConnection(config) as relay:
        failure = relay.probe(settings.support_address)
    if failure is None:
        return None
    return (
        f"{RELAY_SETTING}: the SMTP relay {config.redacted_url()} cannot be used: {failure.describe()}; "
        "every email waits in the outbox until it can"
    )


def check_delivery_settings(settings: Settings) -> None:
    """Start-up check of what outbound mail needs: one line naming the bad setting, never a traceback."""
    problems = delivery_settings_problems(settings)
    if problems:
        raise SettingsError(problems[0])


@dataclass(frozen=True)
class FileFacts:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class MailFacts:
    """What one row needs from the database, read in one transaction and detached from it."""

    number: int
    subject: str
    reply_key: str
    recipient: str
    recipient_name: str
    participant_key: str
    reply_markdown: str | None
    files: tuple[FileFacts, ...]
    # The row's Cc (the others it was written for), less those who no longer get the ticket's mail.
    cc: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreparedMail:
    envelope_from: str
    recipient: str
    data: bytes
    attached: int = 0  # files attached to it (the rest are links or named)
    # The reply's files the customer gets only as links or by name, for the staff's thread line.
    not_attached: dict[str, list[str]] = field(default_factory=dict)


class EmailDelivery:
    """The performer of `email.send` rows."""

    def __init__(
        self, desk: Desk, *, templates: Templates | None = None, pool: RelayPool | None = None
    ) -> None:
        self.desk = desk
        self.templates = templates or load_templates(desk.settings.templates_dir)
        self.pool = pool or RelayPool(RelayConfig.from_url(desk.settings.smtp_relay_url))
        self._secret: bytes | None = None

    async def perform(self, item: OutboxItem) -> Outcome:
        prepared = await asyncio.to_thread(self.prepare, item)
        if not isinstance(prepared, PreparedMail):
            return prepared
        result = await self.pool.send(prepared.envelope_from, prepared.recipient, prepared.data)
        if prepared.attached and refused_for_size(result):
            # The relay takes less than the attachments' budget (Postfix's default is 10,240,000
            # bytes, and base64 makes files a third larger): the same mail with every file as a link
            # (or named), rather than no answer at all.
            log.info("email %s too large for the relay; sending its files as links", item.id)
            smaller = await asyncio.to_thread(self.prepare, item, attach=False)
            if not isinstance(smaller, PreparedMail):
                return smaller
            result = await self.pool.send(smaller.envelope_from, smaller.recipient, smaller.data)
            prepared = smaller
        outcome = outcome_for(result)
        if isinstance(outcome, Done) and prepared.not_attached:
            # Recorded on the row; the reply's receipt tells staff once, when all its rows ended.
            outcome = replace(outcome, result={**outcome.result, FILES_NOT_ATTACHED: prepared.not_attached})
        return outcome

    async def close(self) -> None:
        await self.pool.close()

    # ----- preparing one mail (runs in a thread) -----

    def prepare(self, item: OutboxItem, *, attach: bool = True) -> PreparedMail | Outcome:
        with self.desk.db.read() as session:
            facts = read_facts(session, item)
        if isinstance(facts, str):
            log.info("email %s not sent: %s", item.id, facts, extra={"row_id": item.id})
            return Done(result={"skipped": facts}, apply=_not_sent(item))
        try:
            data, attached, not_attached = self.compose(item, facts, attach=attach)
        except ValueError as exc:
            # An address or header that can never be sent (compose validates every header it writes).
            return Fail(f"the email could not be composed: {exc}")
        # RFC 5321 4.5.5: bounces come back to an address of ours that names the participant.
        envelope_from = bounce_address(self.desk.settings.support_address, facts.participant_key)
        return PreparedMail(envelope_from, facts.recipient, data, attached, not_attached)

    def compose(
        self, item: OutboxItem, facts: MailFacts, *, attach: bool = True
    ) -> tuple[bytes, int, dict[str, list[str]]]:
        """The mail's bytes, how many files it attaches (none when not `attach`), and the names of
        those it does not attach: "linked" (too large) and "missing" (not in the file store)."""
        settings = self.desk.settings
        payload = item.payload
        template = str(payload["template"])
        attached, too_large, missing = self._attachments(facts.files, MAX_ATTACHED_BYTES if attach else 0)
        reply = None
        if facts.reply_markdown is not None:
            notes = self._too_large_note(too_large) + _missing_note(missing)
            reply = render_markdown(facts.reply_markdown + notes)
        rendered = self.templates.render(
            template,
            TemplateContext(
                number=facts.number,
                subject=facts.subject,
                sender_name=settings.sender_name,
                support_address=settings.support_address,
                reply_address=reply_address(settings.support_address, facts.reply_key),
                customer_name=facts.recipient_name,
                unsubscribe_url=unsubscribe_url(settings.public_url, facts.participant_key),
                reply=reply,
                merged_into=_int_or_none(payload.get("target_number")),
            ),
        )
        mail = OutboundMail(
            sender_name=settings.sender_name,
            sender_address=settings.support_address,
            to=_mailbox(facts.recipient_name, facts.recipient),
            cc=facts.cc,
            reply_to=reply_address(settings.support_address, facts.reply_key),
            subject=_subject_for(rendered.subject, payload.get("in_reply_to")),
            text=rendered.text,
            html=rendered.html,
            message_id=str(payload["message_id_header"]),
            in_reply_to=payload.get("in_reply_to"),
            references=tuple(str(reference) for reference in payload.get("references") or ()),
            auto_submitted=AUTO_SUBMITTED.get(template),
            list_unsubscribe_url=unsubscribe_url(settings.public_url, facts.participant_key) or None,
            list_unsubscribe_mailto=unsubscribe_address(settings.support_address, facts.participant_key),
            attachments=attached,
        )
        not_attached = {
            key: [file.filename for file in group]
            for key, group in (("linked", too_large), ("missing", missing))
            if group
        }
        return compose(mail), len(attached), not_attached

    def _attachments(
        self, files: tuple[FileFacts, ...], budget: int
    ) -> tuple[tuple[OutboundAttachment, ...], tuple[FileFacts, ...], tuple[FileFacts, ...]]:
        """(attached, too large, missing): files attached while they fit in `budget` bytes in total,
        the rest become links (or are named). A file missing from the file store (a files folder not
        shared between roles, a file deleted) is named as not available: a link to it would be dead,
        and the reply's text must still go out."""
        fitting: list[FileFacts] = []
        missing: list[FileFacts] = []
        left = budget
        for file in files:
            if not self.desk.files.exists(file.sha256):
                log.warning(
                    "attachment %s is missing from the file store: named as not available",
                    file.id,
                    extra={"attachment_id": file.id},
                )
                missing.append(file)
            elif file.size <= left:
                fitting.append(file)
                left -= file.size
        loaded = [
            OutboundAttachment(file.filename, file.content_type, self.desk.files.get(file.sha256))
            for file in fitting
        ]
        attached, _ = compose_attachments_within(loaded, budget)
        too_large = tuple(file for file in files if file not in fitting and file not in missing)
        return attached, too_large, tuple(missing)

    def _too_large_note(self, files: tuple[FileFacts, ...]) -> str:
        if not files:
            return ""
        public_url = self.desk.settings.public_url
        lines = ["", "", "Files too large to attach:", ""]
        for file in files:
            name = _markdown_text(safe_filename(file.filename))
            size = size_words(file.size)
            if public_url:
                link = attachment_url(public_url, self._link_secret(), file.id, file.sha256)
                lines.append(f"- [{name}]({link}) ({size})")
            else:
                lines.append(f"- {name} ({size}), ask us for it in a reply")
        return "\n".join(lines)

    def _link_secret(self) -> bytes:
        if self._secret is None:
            self._secret = link_secret(self.desk.db)
        return self._secret


@functools.cache
def _recipient_query() -> Select[*tuple[Any, ...]]:
    """The row's ticket, and its participant with the row's address if they still are one.

    The recipient is found by ticket and address, never by the participant's id alone: a
    participant removed (`cc remove`, or a duplicate dropped by a merge) frees its id, SQLite hands
    that id to the next participant created, on any ticket, and the mail would go to that person.
    """
    return (
        select(
            Ticket.number,
            Ticket.subject,
            Ticket.reply_key,
            Ticket.merged_into_id,
            Participant.email,
            Participant.name,
            Participant.unsubscribe_key,
            Participant.unsubscribed_at,
            Participant.bounced_at,
        )
        .select_from(Ticket)
        .outerjoin(
            Participant,
            and_(Participant.ticket_id == Ticket.id, Participant.email == bindparam("to", type_=String)),
        )
        .where(Ticket.id == bindparam("ticket_id", type_=Ticket.id.type))
    )


def read_facts(session: Session, item: OutboxItem) -> MailFacts | str:
    """The facts for one row, or the reason it must not be sent (any more)."""
    payload: dict[str, Any] = item.payload
    to = str(payload.get("to") or "")
    # The ticket and the recipient in one Core statement built once: every email sent reads them.
    connection = session.connection()
    found = connection.execute(_recipient_query(), {"ticket_id": item.ticket_id, "to": to}).first()
    if found is None:
        return "the ticket no longer exists"
    number, subject, reply_key = found.number, found.subject, found.reply_key
    recipient: Row[Any] | None = found
    ticket_id = item.ticket_id
    if found.merged_into_id is not None:
        # A merged ticket's mail continues in the ticket it went into: replies must land there, and
        # its participants are there now (moved, or already there and the duplicate dropped).
        merged = follow_merges(session, session.get(Ticket, found.merged_into_id))
        if merged is not None:
            reply_key, ticket_id = merged.reply_key, merged.id
            recipient = connection.execute(_recipient_query(), {"ticket_id": merged.id, "to": to}).first()
    if recipient is None or recipient.email is None:
        return "the recipient is no longer a participant of the ticket"
    if recipient.unsubscribed_at is not None:
        return f"{recipient.email} unsubscribed from this ticket"
    if recipient.bounced_at is not None:
        return f"mail to {recipient.email} bounced before"
    reply_markdown: str | None = None
    files: tuple[FileFacts, ...] = ()
    if item.message_id is not None:
        message = session.get(Message, item.message_id)
        if message is None or message.deleted_at is not None:
            return "the reply was deleted before it was delivered"
        if message.visibility != Visibility.PUBLIC:
            return "the reply became an internal note before it was delivered"
        if message.delivery == Delivery.CANCELLED:
            return "the reply was cancelled before it was delivered"
        reply_markdown = message.body_markdown
        files = tuple(
            FileFacts(a.id, a.filename, a.content_type, a.size, a.sha256) for a in message.attachments
        )
    cc: tuple[str, ...] = ()
    if payload.get("cc"):
        # Someone removed, unsubscribed or bounced since the row was written is not mailed it: shown
        # in Cc, they would seem to have it, and a reply-all would bring it to them all the same.
        still = set(connection.execute(_mailed_query(), {"ticket_id": ticket_id}).scalars())
        cc = tuple(address for address in map(str, payload["cc"]) if address in still)
    return MailFacts(
        number=number,
        subject=subject,
        reply_key=reply_key,
        recipient=recipient.email,
        recipient_name=given_name(recipient.name or str(payload.get("to_name") or ""), recipient.email),
        participant_key=recipient.unsubscribe_key,
        reply_markdown=reply_markdown,
        files=files,
        cc=cc,
    )


def given_name(name: str, address: str) -> str:
    """The recipient's name as they gave it, or "" when they gave none.

    A customer first seen without a display name (a bare From address, `/desk new`) is named after
    their address's local part (store.actions.customers.customer_for_email), so the triage side has
    something to show. Mail must not use that stand-in: "To: info <info@acme.example>" and "Hello info,"
    address a person by a name they never gave. So does a "name" that is the address itself, which
    Outlook writes for an address not in its contacts (`"'bob@acme.example'" <bob@acme.example>`).
    Empty, the greeting line is left out (mail.templates)."""
    if name == address.partition("@")[0] or name.strip("'\" ").lower() == address.lower():
        return ""
    return name


@functools.cache
def _mailed_query() -> Select[str]:
    """The addresses a ticket's mail still goes to."""
    return select(Participant.email).where(
        Participant.ticket_id == bindparam("ticket_id", type_=Ticket.id.type),
        Participant.unsubscribed_at.is_(None),
        Participant.bounced_at.is_(None),
    )


def refused_for_size(result: SendResult) -> bool:
    """A refusal for the message's size: 552 (RFC 5321 4.5.3.1.10, RFC 1870 at MAIL FROM), or the
    enhanced status 5.3.4 "message too big for system" (RFC 3463)."""
    if result.status is not DeliveryStatus.PERMANENT:
        return False
    return result.code == 552 or "5.3.4" in result.text


def outcome_for(result: SendResult) -> Outcome:
    if result.status is DeliveryStatus.DELIVERED:
        return Done(result={"relay": result.describe()})
    if result.status is DeliveryStatus.TEMPORARY:
        return Retry(result.describe())
    return Fail(f"the mail server refused it: {result.describe()}")


def _not_sent(item: OutboxItem) -> Apply:
    """A mail skipped (its reply deleted or made a note after its window, its recipient gone) was
    never sent: its Message-ID, recorded when the row was written, is forgotten, as a cancelled
    one is (`outbox.cancel_for_message`). Kept, it would be the parent of the customer's next mail
    from the desk, and on a ticket staff opened with `/desk new` it would count as the desk having
    written to them (`mail_started`), so notices would go to a customer who never got a mail. A
    reply's receipt must not tick it as delivered either: the reply is marked cancelled instead."""
    header = item.payload.get("message_id_header")

    def apply(session: Session) -> None:
        if header:
            outbox.forget_sent_ids(session, [str(header)])
        if item.message_id is None:
            return
        message = session.get(Message, item.message_id)
        if (
            message is not None
            and message.delivery == Delivery.PENDING
            and (message.deleted_at is not None or message.visibility != Visibility.PUBLIC)
        ):
            message.delivery = Delivery.CANCELLED

    return apply


def _mailbox(name: str, address: str) -> str:
    """`"Name" <address>` for compose (which encodes the name, RFC 2047); no CR/LF from user input."""
    name = clean_header_value(name).replace('"', '\\"')
    return f'"{name}" <{address}>' if name else address


def _subject_for(subject: str, in_reply_to: object) -> str:
    """A mail that answers none (the first of a ticket staff opened with `/desk new`: the customer
    never wrote) does not say "Re:" as if it did; the templates' subjects are written for replies."""
    if in_reply_to:
        return subject
    return REPLY_PREFIX_RE.sub("", subject).strip() or NO_SUBJECT


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _missing_note(files: tuple[FileFacts, ...]) -> str:
    if not files:
        return ""
    lines = ["", "", "Files not attached:", ""]
    lines += [f"- {_markdown_text(safe_filename(file.filename))} (not available)" for file in files]
    return "\n".join(lines)


def _markdown_text(text: str) -> str:
    """A file name as literal Markdown text (no accidental emphasis, links or HTML)."""
    return "".join("\\" + char if char in "\\`*_{}[]()<>#+-.!|~" else char for char in text)
