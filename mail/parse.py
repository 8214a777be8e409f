"""Inbound email understanding: raw RFC 5322 bytes in, a typed `InboundEmail` out.

Pure and synchronous (the SMTP intake runs it in a worker thread), and total: any bytes at
all give a best-effort result, never an exception. The full original is kept by the caller
as raw .eml; this is what the thread shows and what the store needs to route the message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32, EmailPolicy, Policy
from typing import Any
from urllib.parse import unquote

from mail.addresses import parse_addresses, parse_mailboxes
from mail.guard import Classification, MailKind, classify
from mail.html_to_markdown import html_to_markdown, tidy_markdown
from mail.inbound_bounce import BounceInfo
from mail.inbound_charset import decode_text
from mail.inbound_headers import (
    decode_header_text,
    first_header,
    header_message_id,
    parse_date,
    parse_message_ids,
    raw_header_values,
)
from mail.inbound_mime import MimeWalk, RawAttachment, walk_message
from mail.markdown_escape import plain_text_markdown
from mail.trim import trim_reply

__all__ = ["BounceInfo", "InboundAttachment", "InboundEmail", "header_message_id", "parse_email"]

logger = logging.getLogger(__name__)

NO_SUBJECT = "(no subject)"
MAX_SUBJECT_CHARS = 998  # RFC 5322 section 2.1.1 line limit: longer is not a subject anybody wrote
# The email package parses nested multiparts and messages recursively; past a few hundred levels
# it raises RecursionError and slows down quadratically. Containers beyond this many are made
# opaque *before* parsing, so their content is shown as text (and `truncated` is set).
MAX_MIME_CONTAINERS = 200
MAX_DEPTH_LIMIT = 100  # a larger max_depth is clamped: the MIME walk recurses once per level
_CID_REFERENCE = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)  # RFC 2392 content-id URLs
_BOUNDARY_PARAMETER = re.compile(rb"boundary(?=\s*=)", re.IGNORECASE)
_MESSAGE_CONTENT_TYPE = re.compile(rb"(content-type\s*:\s*)message/", re.IGNORECASE)
# What the email package parses of a header it is asked for (Content-Type, Content-Disposition...):
# it parses the value again on every request, at about 0.1 ms per parameter, and its compat32 policy
# in quadratic time; a hostile header of 100,000 parameters held a worker for minutes. Real headers
# are a few hundred characters with a handful of parameters. Only these reads are bounded: the
# headers shown (Subject, From, To...) are read raw, and the raw .eml keeps everything.
MAX_PARSED_HEADER_CHARS = 8192
MAX_PARSED_HEADER_PARAMETERS = 50


def bounded_header_value(value: Any) -> Any:
    """A header value cut to what the email package may parse of it (anything else as it is)."""
    if not isinstance(value, str):
        return value
    value = value[:MAX_PARSED_HEADER_CHARS]
    if value.count(";") > MAX_PARSED_HEADER_PARAMETERS:
        value = ";".join(
            value.split(";", MAX_PARSED_HEADER_PARAMETERS + 1)[: MAX_PARSED_HEADER_PARAMETERS + 1]
        )
    return value


class _BoundedDefault(EmailPolicy):
    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, bounded_header_value(value))


class _BoundedCompat32(Compat32):
    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, bounded_header_value(value))


# policy.default and policy.compat32, with header reads bounded (see MAX_PARSED_HEADER_CHARS).
DEFAULT_POLICY = _BoundedDefault()
COMPAT32_POLICY = _BoundedCompat32()


@dataclass(frozen=True)
class InboundAttachment:
    filename: str  # sanitised: no path, no control characters, <= 255 bytes; a default when absent
    content_type: str
    data: bytes
    inline: bool  # an inline image the HTML body refers to (cid:)
    content_id: str | None


@dataclass(frozen=True)
class InboundEmail:
    message_id: str  # without <>; "sha256-<hex>@servicedesk.invalid" when the message has none
    from_address: str | None  # lowercased addr-spec of the From address part, never the display name
    from_name: str  # decoded display name, one clean line; the local part when there is none
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    delivered_to: tuple[str, ...]  # Delivered-To and X-Original-To
    subject: str  # decoded, one clean line, "(no subject)" when empty
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    body_markdown: str  # the whole body (plain text preferred; HTML sanitised and converted)
    reply_markdown: str  # quoted history and signatures trimmed; the whole body if that leaves nothing
    attachments: tuple[InboundAttachment, ...]
    classification: MailKind  # see mail/guard.py
    bounce: BounceInfo | None  # for delivery reports: what bounced, for whom, why
    truncated: bool  # a depth or size limit cut the structure; the rest is shown as text
    guard_rule: str = ""  # the loop-guard rule that classified it ("" for a request)
    auto_reply_suppressed: bool = False  # the sender asked for no auto-responses (no acknowledgement)
    # Display names given to To, Cc and Reply-To addresses, so participants are greeted by name.
    names: tuple[tuple[str, str], ...] = ()
    # Sent through a mailing list (RFC 2919 List-Id, RFC 2369 List-Post), which may point Reply-To
    # at itself.
    mailing_list: bool = False

    def name_of(self, address: str) -> str:
        return next((name for known, name in self.names if known == address), "")


class _ContainerCap:
    """re.sub callback: keep the first MAX_MIME_CONTAINERS matches, neutralise the rest."""

    def __init__(self, replacement: bytes) -> None:
        self.replacement = replacement
        self.seen = 0

    @property
    def capped(self) -> bool:
        return self.seen > MAX_MIME_CONTAINERS

    def __call__(self, match: re.Match[bytes]) -> bytes:
        self.seen += 1
        if self.seen <= MAX_MIME_CONTAINERS:
            return match.group(0)
        return match.expand(self.replacement)


def _cap_containers(raw: bytes) -> tuple[bytes, bool]:
    """Make multipart/message containers past MAX_MIME_CONTAINERS opaque (see above)."""
    boundaries = _ContainerCap(b"x-capped-boundary")  # a multipart without boundary is one text
    messages = _ContainerCap(rb"\1text/x-capped-message-")
    raw = _BOUNDARY_PARAMETER.sub(boundaries, raw)
    raw = _MESSAGE_CONTENT_TYPE.sub(messages, raw)
    return raw, boundaries.capped or messages.capped


def _attachments(walk: MimeWalk) -> tuple[InboundAttachment, ...]:
    referenced = {unquote(ref).lower() for html in walk.html_sources for ref in _CID_REFERENCE.findall(html)}
    return tuple(
        InboundAttachment(
            filename=item.filename,
            content_type=item.content_type,
            data=item.data,
            inline=item.content_id is not None and item.content_id.lower() in referenced,
            content_id=item.content_id,
        )
        for item in walk.attachments
    )


def _cid_names(attachments: list[RawAttachment]) -> dict[str, str]:
    return {item.content_id.lower(): item.filename for item in attachments if item.content_id}


@dataclass(frozen=True)
class _Body:
    markdown: str
    reply: str
    truncated: bool


def _body(walk: MimeWalk) -> _Body:
    names = _cid_names(walk.attachments)
    whole: list[str] = []
    # Per part: the reply source, and whether it is plain text (Markdown only once trimmed).
    sources: list[tuple[str, bool]] = []
    truncated = False
    for segment in walk.segments:
        if segment.kind == "html":
            conversion = html_to_markdown(segment.content, cid_names=names)
            whole.append(conversion.markdown)
            sources.append((conversion.reply_markdown, False))
            truncated = truncated or conversion.truncated
        else:
            # Plain text is made Markdown that shows as typed (a `__init__.py` or `2*3*4` is not
            # formatting), but trimmed as typed: its `>` quotes are what trimming reads.
            text = tidy_markdown(segment.content)
            whole.append(plain_text_markdown(text))
            sources.append((text, True))
    markdown = "\n\n".join(part for part in whole if part.strip())
    reply = _reply(sources)
    return _Body(markdown, reply if reply.strip() else markdown, truncated)


def _reply(sources: list[tuple[str, bool]]) -> str:
    """The customer's new words. Trimmed over all the parts at once where they are all plain text
    (a forwarded message's part is cut as history of the part before it) or all HTML; a mix is
    trimmed part by part, since plain text is escaped only after its trimming."""
    if len({plain for _, plain in sources}) <= 1:
        joined = "\n\n".join(text for text, _ in sources if text.strip())
        reply = _trimmed(joined)
        return plain_text_markdown(reply) if sources and sources[0][1] else reply
    parts = ((_trimmed(text), plain) for text, plain in sources)
    return "\n\n".join(plain_text_markdown(part) if plain else part for part, plain in parts if part.strip())


def _trimmed(body: str) -> str:
    return trim_reply(body) if body.strip() else ""


def _from(message: Message) -> tuple[str | None, str]:
    boxes = parse_mailboxes(raw_header_values(message, "From")[:1])  # a second From is a forgery
    if not boxes:
        return None, ""
    address = boxes[0].address
    name = boxes[0].name or (address.split("@", 1)[0] if address else "")
    return address, name


def _subject(message: Message) -> str:
    subject = decode_header_text(first_header(message, "Subject") or "")[:MAX_SUBJECT_CHARS]
    return subject or NO_SUBJECT


def _parse(raw: bytes, parse_policy: Policy, max_depth: int, envelope_from: str | None) -> InboundEmail:
    capped_raw, capped = _cap_containers(raw)
    message = BytesParser(policy=parse_policy).parsebytes(capped_raw)
    walk = walk_message(message, parse_policy=parse_policy, max_depth=max_depth)
    body = _body(walk)
    verdict: Classification = classify(message, envelope_from=envelope_from)
    from_address, from_name = _from(message)
    return InboundEmail(
        message_id=header_message_id(raw),
        from_address=from_address,
        from_name=from_name,
        to=parse_addresses(raw_header_values(message, "To")),
        cc=parse_addresses(raw_header_values(message, "Cc")),
        reply_to=parse_addresses(raw_header_values(message, "Reply-To")),
        delivered_to=parse_addresses(
            raw_header_values(message, "Delivered-To") + raw_header_values(message, "X-Original-To")
        ),
        subject=_subject(message),
        in_reply_to=parse_message_ids(raw_header_values(message, "In-Reply-To")),
        references=parse_message_ids(raw_header_values(message, "References")),
        date=parse_date(first_header(message, "Date")),
        body_markdown=body.markdown,
        reply_markdown=body.reply,
        attachments=_attachments(walk),
        classification=verdict.kind,
        bounce=verdict.bounce,
        truncated=capped or walk.truncated or body.truncated,
        guard_rule=verdict.rule,
        auto_reply_suppressed=verdict.suppress_auto_reply,
        names=_display_names(message),
        mailing_list=any(first_header(message, name) is not None for name in ("List-Id", "List-Post")),
    )


def _display_names(message: Message) -> tuple[tuple[str, str], ...]:
    named: dict[str, str] = {}
    headers = raw_header_values(message, "To") + raw_header_values(message, "Cc")
    for mailbox in parse_mailboxes(headers + raw_header_values(message, "Reply-To")):
        if mailbox.address is not None and mailbox.name and mailbox.name != mailbox.address:
            named.setdefault(mailbox.address, mailbox.name[:200])
    return tuple(named.items())


def _last_resort(raw: bytes) -> InboundEmail:
    """When even the compat32 parser fails: the bytes as text, no structure, nothing trusted."""
    text = plain_text_markdown(tidy_markdown(decode_text(raw[:1_000_000])))
    return InboundEmail(
        message_id=header_message_id(raw),
        from_address=None,
        from_name="",
        to=(),
        cc=(),
        reply_to=(),
        delivered_to=(),
        subject=NO_SUBJECT,
        in_reply_to=(),
        references=(),
        date=None,
        body_markdown=text,
        reply_markdown=text,
        attachments=(),
        classification="request",
        bounce=None,
        truncated=True,
    )


def parse_email(raw: bytes, *, max_depth: int = 20, envelope_from: str | None = None) -> InboundEmail:
    """Parse one inbound message; never raises.

    `envelope_from` is the SMTP MAIL FROM path when known ("" for the null path `<>`): the loop
    guard needs it to recognise bounces. `max_depth` bounds how deep MIME structure is followed.
    """
    depth = max(1, min(max_depth, MAX_DEPTH_LIMIT))
    for parse_policy in (DEFAULT_POLICY, COMPAT32_POLICY):
        try:
            return _parse(raw, parse_policy, depth, envelope_from)
        except Exception:  # the "never crash on hostile MIME" boundary: any bug or library
            # failure on a hostile message must still give the intake something to store;
            # policy.default raises on some broken headers, compat32 does not.
            logger.warning("inbound mail parse failed with %s policy", parse_policy, exc_info=True)
    return _last_resort(raw)
