"""What a bounce says: which of our messages failed, for whom, and why (RFC 3464, RFC 6522).

A delivery status notification is a `multipart/report` with a human part, a
`message/delivery-status` part (one block of fields per recipient) and the returned message or
its headers (`message/rfc822`, `text/rfc822-headers`). Old-style bounces (qmail, some Exim set-ups)
are plain text with the original headers pasted in, so a text search is the fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from mail.addresses import normalize_address
from mail.inbound_charset import decode_text
from mail.inbound_headers import clean_text, first_header, parse_message_ids, unfold
from mail.inbound_mime import payload_of

_MAX_PARTS = 200
_MAX_DEPTH = 6
_MAX_TEXT_SCAN = 200_000
_STATUS_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")  # RFC 3463 enhanced status code
_MESSAGE_ID_LINE = re.compile(r"^\s*>?\s*message-id\s*:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_STATUS_TYPES = {"message/delivery-status", "message/global-delivery-status"}
_RETURNED_MESSAGE_TYPES = {"message/rfc822", "message/global"}
_RETURNED_HEADER_TYPES = {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
# A server reply quoted in a plain-text bounce: "550 5.1.1 …" anywhere, or "550 …" opening a line
# (or after qmail's "said:", or Exim's "host mx.example [192.0.2.7]:"). A bare three-digit number
# elsewhere is too often something else.
_SMTP_REPLY_WITH_STATUS = re.compile(r"\b([45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b.*\S)")
_SMTP_REPLY_LINE = re.compile(
    r"(?:^|said:|\]:)[ \t]*([45]\d\d[ -][ \t]*\S.*\S)", re.MULTILINE | re.IGNORECASE
)
# Where an old-style bounce starts pasting the message back: its own words end there.
_RETURNED_COPY = re.compile(
    r"^.*(?:copy of the message|original message|message headers follow|returned message|"
    r"below this line).*$",
    re.MULTILINE | re.IGNORECASE,
)

# An old-style plain-text warning that a mail is late, not lost: Exim's "has not yet been delivered
# … Delivery attempts will continue", Sendmail's "THIS IS A WARNING MESSAGE ONLY". With no
# delivery-status part to say `Action: delayed`, its words (or its subject: Exim's "Warning: message
# … delayed 24 hours", Sendmail's "Warning: could not send message for past 4 hours") must, or it
# reads as a failure and a live address is marked bounced.
_DELAY_WORDS = re.compile(
    r"has not yet been delivered|not been delivered yet|delivery attempts will continue|"
    r"warning message only|do not need to resend|still undelivered|will keep trying",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(r"^\s*warning\s*:|\bdelayed\b|\(delay\)|still being retried", re.IGNORECASE)
# A subject that names a failure: what follows it may be the returned mail's own subject.
# ("still undelivered", a delay warning's words, is none).
_FAILURE_SUBJECT = re.compile(
    r"undeliverable|\bfail(?:ed|ure)\b|returned mail|returning message|could not be delivered", re.IGNORECASE
)
# A permanent refusal as _smtp_reply_in gives it ("smtp; 550 …").
_PERMANENT_REPLY = re.compile(r"^smtp; 5\d\d\b")


@dataclass(frozen=True)
class BounceInfo:
    original_message_ids: tuple[str, ...]  # Message-ID(s) of the message that bounced (ours, we hope)
    failed_recipients: tuple[str, ...]  # Final-Recipient (or Original-Recipient) addresses
    action: str | None  # RFC 3464 Action of the first recipient: failed, delayed, ...
    status: str | None  # enhanced status code, e.g. "5.1.1"; 4.x.x is transient
    diagnostic: str | None  # Diagnostic-Code text, e.g. "smtp; 550 5.1.1 user unknown"


def _parts(message: Message) -> list[Message]:
    """The parts of `message`, breadth first, bounded in depth and count."""
    found: list[Message] = []
    queue: list[tuple[Message, int]] = [(message, 0)]
    while queue and len(found) < _MAX_PARTS:
        part, depth = queue.pop(0)
        found.append(part)
        payload = payload_of(part)
        if depth < _MAX_DEPTH and isinstance(payload, list):
            queue.extend((child, depth + 1) for child in payload)
    return found


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return decode_text(payload[:_MAX_TEXT_SCAN], part.get_content_charset())
    raw = payload_of(part)
    return raw[:_MAX_TEXT_SCAN] if isinstance(raw, str) else ""


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The per-message and per-recipient field blocks of a delivery-status part."""
    payload = payload_of(part)
    if isinstance(payload, list):  # the email package parses each block as a header-only message
        return [
            {key.lower(): clean_text(unfold(str(value))) for key, value in block.raw_items()}
            for block in payload
        ]
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n\s*\r?\n", unfold(_text_of(part))):
        fields = dict(re.findall(r"^([A-Za-z-]+)\s*:\s*(.*)$", chunk, re.MULTILINE))
        if fields:
            blocks.append({key.lower(): clean_text(value) for key, value in fields.items()})
    return blocks


def _recipient(value: str) -> str | None:
    # "rfc822; user@example.com" (RFC 3464 section 2.3.2: address-type ";" address)
    return normalize_address(value.split(";", 1)[-1])


def _returned_ids(part: Message) -> tuple[str, ...]:
    payload = payload_of(part)
    if isinstance(payload, list):  # message/rfc822, or rfc822-headers parsed as a message
        value = first_header(payload[0], "Message-ID") if payload else None
        return parse_message_ids([value]) if value else ()
    return parse_message_ids(_MESSAGE_ID_LINE.findall(_text_of(part))[:1])


def extract_bounce(message: Message) -> BounceInfo:
    """Whatever a bounce tells about the failed delivery; fields stay empty when it is silent."""
    ids: list[str] = []
    recipients: list[str] = []
    action = status = diagnostic = None
    texts: list[str] = []
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type in _STATUS_TYPES:
            for block in _field_blocks(part):
                address = _recipient(block.get("final-recipient") or block.get("original-recipient") or "")
                if address is None:
                    continue  # the per-message block, or a recipient we cannot read
                block_action = block.get("action", "").lower() or None
                if block_action in {None, "failed"} and address not in recipients:
                    recipients.append(address)
                if action is None:
                    action = block_action
                    code = _STATUS_CODE.search(block.get("status", ""))
                    status = code.group(1) if code else None
                    diagnostic = block.get("diagnostic-code") or None
        elif content_type in _RETURNED_MESSAGE_TYPES | _RETURNED_HEADER_TYPES:
            ids.extend(i for i in _returned_ids(part) if i not in ids)
        elif content_type == "text/plain":
            texts.append(_text_of(part))
    if not ids:
        for text in texts:
            ids.extend(parse_message_ids(_MESSAGE_ID_LINE.findall(text)[:1]))
            if ids:
                break
    if diagnostic is None and action is None:
        diagnostic = next((found for found in map(_smtp_reply_in, texts) if found), None)
    if action is None and not _permanent(diagnostic) and _is_delay_warning(message, texts):
        action = "delayed"
    return BounceInfo(tuple(ids), tuple(recipients), action, status, diagnostic)


def _smtp_reply_in(text: str) -> str | None:
    """The remote server's reply quoted in an old-style plain-text bounce ("Remote host said: 550
    5.1.1 user unknown"), as a Diagnostic-Code would give it. Only the notice's own words are read,
    not the copy of the message after them, which could hold anything."""
    own_words = _RETURNED_COPY.split(text[:_MAX_TEXT_SCAN], maxsplit=1)[0]
    found = _SMTP_REPLY_WITH_STATUS.search(own_words) or _SMTP_REPLY_LINE.search(own_words)
    return f"smtp; {found.group(1)[:300]}" if found else None


def _permanent(diagnostic: str | None) -> bool:
    """Whether the notice quotes a server's permanent refusal (5xx): a failure, whatever else it says."""
    return diagnostic is not None and _PERMANENT_REPLY.match(diagnostic) is not None


def _is_delay_warning(message: Message, texts: list[str]) -> bool:
    """Whether a plain-text notice says the mail is still on its way (only its own words are read,
    not the copy of the message after them). Its subject counts unless it also says the mail
    failed: "Undeliverable: Re: Order delayed" repeats the subject of the mail it returns."""
    subject = clean_text(unfold(str(message.get("Subject", ""))))
    if _DELAY_SUBJECT.search(subject) and not _FAILURE_SUBJECT.search(subject):
        return True
    own_words = (_RETURNED_COPY.split(text[:_MAX_TEXT_SCAN], maxsplit=1)[0] for text in texts)
    return any(_DELAY_WORDS.search(words) for words in own_words)
