"""One outbound e-mail, composed to bytes with the ``emails`` package; no sending here (see mail.relay).

What ``emails`` (1.1) does and does not do, and so what this module adds:
- it sets a Message-ID only when given one: we always give the one fixed when the outbox row was written,
  so a retried mail keeps its identity (receivers and our own intake deduplicate on it);
- it refuses header values with CR/LF (BadHeaderError) instead of cleaning them: values from user input are
  cleaned here first, so a hostile subject or name never fails a delivery nor injects a header;
- it RFC 2047-encodes non-ASCII subjects and display names, and RFC 2231-encodes attachment names;
- it RFC 2047-encodes a whole To or Cc value, addresses included, once any address in it has a non-ASCII
  local part (RFC 2047 §5 forbids that): we write such addresses raw in UTF-8 (RFC 6532) instead;
- it always nests multipart/mixed > related > alternative; we build the plain RFC 2046 shape instead:
  multipart/alternative (text, then HTML: the last part is the preferred one), inside multipart/mixed only
  when there are attachments;
- ``as_bytes()`` produces the message without sending (its ``send()`` is not used: see mail.relay).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.utils import format_datetime

import emails
from emails.utils import SafeMIMEMultipart, sanitize_address

from store.limits import ADDRESS_LITERAL

MAX_ATTACHED_BYTES = 10 * 1024 * 1024
MAX_REFERENCES = 20
MAX_FILENAME_CHARS = 150
OCTET_STREAM = "application/octet-stream"

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Text a reader would take for an RFC 2047 encoded word and decode (and so show other characters
# than were written, a line break among them). Such text is encoded itself (see header_text).
ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
# RFC 5322 msg-id without its angle brackets: no whitespace, no brackets, one "@".
MESSAGE_ID_RE = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+$")
# RFC 5322 field-name: printable US-ASCII except ":".
HEADER_NAME_RE = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
ANGLE_ADDRESS_RE = re.compile(r"^(.*)<([^<>]*)>$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9-]+$")
CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# Headers of ours whose items must not be split, folded between items (see _ItemFolded).
FOLDED_BETWEEN_ITEMS = ("References", "List-Unsubscribe")
# Longest piece of an RFC 2231 parameter value on one header line (see _ParameterFolded).
PARAMETER_SECTION_CHARS = 60
URL_RE = re.compile(r"^https?://[\x21-\x7e]+$")
# Characters an address never has here, outside a domain literal: separators, quotes, comments, brackets.
NOT_IN_ADDRESS = frozenset(' <>,;"()\\[]')
# Headers compose() owns; extra_headers may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "auto-submitted",
        "x-auto-response-suppress",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "return-path",
    }
)


@dataclass(frozen=True)
class OutboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutboundMail:
    sender_name: str
    sender_address: str  # From: "<sender name>" <support address>
    to: str  # one recipient per transaction: "addr" or "Name <addr>"
    cc: tuple[str, ...]  # the other participants, shown only (never envelope recipients here)
    reply_to: str  # local+replykey@domain
    subject: str
    text: str
    html: str
    message_id: str  # fixed by the caller when the outbox row is written (no <>)
    in_reply_to: str | None
    references: tuple[str, ...]
    auto_submitted: str | None  # "auto-replied", "auto-generated", or None for a human reply
    list_unsubscribe_url: str | None
    list_unsubscribe_mailto: str | None
    attachments: tuple[OutboundAttachment, ...]
    extra_headers: tuple[tuple[str, str], ...] = ()


class _Message(emails.Message):
    """``emails.Message`` with the MIME tree RFC 2046 readers expect (see the module docstring)."""

    # To and Cc written by compose() instead of emails (international addresses, see _address_header).
    address_headers: Mapping[str, _ItemFolded] = {}

    def build_message(self, message_cls: type | None = None) -> SafeMIMEMultipart:
        bodies = [part for part in (self._build_text_part(), self._build_html_part()) if part is not None]
        if not bodies:
            raise ValueError("an email needs a text or an HTML part")
        files = [mime for mime in (attachment.mime for attachment in self.attachments) if mime is not None]
        if files:
            root = self._build_root_message(message_cls)  # multipart/mixed
            alternative = SafeMIMEMultipart("alternative")
            root.attach(alternative)
            for body in bodies:
                alternative.attach(body)
            for file in files:
                root.attach(file)
        else:
            root = self._build_root_message(message_cls, _subtype="alternative")
            for body in bodies:
                root.attach(body)
        for attachment in self.attachments:
            if attachment.mime is not None:
                _write_filename(attachment.mime, attachment.filename)
        for part in root.walk():
            if part is not root:
                del part["MIME-Version"]  # RFC 2045 §4: only the top-level header needs it
        subject = root["Subject"]
        if isinstance(subject, str) and subject.strip() and subject.isascii():
            # The stdlib folds a first word that does not fit (a URL as a subject) onto a line of its
            # own, right after "Subject:": readers that do not trim the unfolded value show it with a
            # leading space. A non-ASCII subject is left to it: it is encoded, in words that fit.
            root.replace_header("Subject", _ItemFolded("Subject", subject.split(" ")))  # type: ignore[arg-type]
        for name in FOLDED_BETWEEN_ITEMS:
            value = root[name]
            if value:
                # compat32 generates any value that has Header's encode(); the stubs only know str.
                root.replace_header(name, _ItemFolded(name, str(value).split(" ")))  # type: ignore[arg-type]
        for name, header in self.address_headers.items():
            if root[name]:
                root.replace_header(name, header)  # type: ignore[arg-type]
        return root


class _ItemFolded:
    """A header of space-separated ASCII items (ids, <URLs>) folded only between items.

    The stdlib's compat32 folding moves an item that does not fit on the first line to the next one, leaving
    "List-Unsubscribe: " empty. That is legal (RFC 5322 §3.2.2) but gives naive parsers a value starting
    with whitespace. The generator uses any value with this ``encode`` method as the Header it would make.
    """

    def __init__(self, name: str, items: Sequence[str]) -> None:
        self._name = name
        self._items = [item for item in items if item]

    def encode(self, linesep: str = "\n", maxlinelen: int | None = 78, **_ignored: object) -> str:
        limit = maxlinelen or 78
        lines = [self._items[0]]
        width = len(self._name) + 2 + len(self._items[0])
        for item in self._items[1:]:
            if width + 1 + len(item) > limit:
                lines.append(item)
                width = 1 + len(item)
            else:
                lines[-1] += " " + item
                width += 1 + len(item)
        return (linesep + " ").join(lines)

    def __str__(self) -> str:
        return " ".join(self._items)


class _Utf8ItemFolded(_ItemFolded):
    """Items with raw UTF-8 (RFC 6532), folded only between items. The bytes generator writes the value
    as ``encode()`` returns it, escaped to ASCII, so the UTF-8 is carried in surrogate escapes."""

    def encode(self, linesep: str = "\n", maxlinelen: int | None = 78, **_ignored: object) -> str:
        text = super().encode(linesep=linesep, maxlinelen=maxlinelen)
        return text.encode("utf-8").decode("ascii", errors="surrogateescape")


class _ParameterFolded:
    """A MIME header value with one file-name parameter in RFC 2231's encoded form, in numbered sections
    on lines of their own (RFC 2231 section 3), so no line grows with the name. In one piece, as the
    stdlib writes it, a name of 150 CJK characters made a line of 1,300, past RFC 5322's 998: relays
    refuse such mail ("500 Line too long") or cut the line."""

    def __init__(self, value: str, parameter: str, filename: str) -> None:
        self._value = value
        self._parameter = parameter
        self._filename = filename

    def sections(self) -> list[str]:
        # Cut between characters, never inside one's UTF-8 bytes: some readers decode each section
        # on its own.
        pieces = ["utf-8''"]
        for char in self._filename:
            quoted = urllib.parse.quote(char, safe="")
            if len(pieces[-1]) + len(quoted) > PARAMETER_SECTION_CHARS:
                pieces.append("")
            pieces[-1] += quoted
        if len(pieces) == 1:
            return [f"{self._parameter}*={pieces[0]}"]
        return [f"{self._parameter}*{index}*={piece}" for index, piece in enumerate(pieces)]

    def encode(self, linesep: str = "\n", **_ignored: object) -> str:
        return (";" + linesep + " ").join([self._value, *self.sections()])

    def __str__(self) -> str:
        return "; ".join([self._value, *self.sections()])


def _write_filename(part: Message, filename: str) -> None:
    """The attachment's name in its Content-Type and Content-Disposition. A plain ASCII name stays as
    the package writes it (quoted); any other is written in RFC 2231 sections (see _ParameterFolded).
    So is an ASCII name holding what reads as an RFC 2047 encoded word: quoted, mail clients decode it
    (against RFC 2047 section 5, but commonly) and show another name; percent-encoded, it reads as
    written."""
    if filename.isascii() and not ENCODED_WORD_RE.search(filename):
        return
    part.replace_header("Content-Type", _ParameterFolded(part.get_content_type(), "name", filename))  # type: ignore[arg-type]
    disposition = part.get_content_disposition() or "attachment"
    part.replace_header("Content-Disposition", _ParameterFolded(disposition, "filename", filename))  # type: ignore[arg-type]


def compose(mail: OutboundMail, *, now: datetime | None = None) -> bytes:
    """The message as bytes with CRLF line ends, ready for one SMTP transaction. ``now`` sets the Date
    (the current time by default)."""
    to_name, to_address = _parse_address(mail.to)
    if not to_address:
        raise ValueError(f"not an email address for To: {clean_header_value(mail.to)!r}")
    cc = [pair for pair in (_parse_address(entry) for entry in mail.cc) if pair[1] and pair[1] != to_address]
    # The relay sends a mail to a non-ASCII local part with SMTPUTF8 (or not at all): only then may the
    # headers carry raw UTF-8 addresses.
    smtputf8 = not _is_ascii_local(to_address)
    message = _Message(
        charset="utf-8",
        message_id=f"<{_message_id(mail.message_id)}>",
        date=format_datetime(now or datetime.now(UTC)),
        subject=header_text(mail.subject),
        mail_from=(header_text(mail.sender_name) or None, _address(mail.sender_address, "From")),
        mail_to=[(header_text(to_name) or None, to_address)],
        cc=[(header_text(name) or None, address) for name, address in cc],
        reply_to=[(None, _address(mail.reply_to, "Reply-To"))],
        headers=_headers(mail),
        text=mail.text,
        html=mail.html or None,
    )
    message.address_headers = {
        name: header
        for name, pairs in (("To", [(to_name, to_address)]), ("Cc", cc))
        if (header := _address_header(name, pairs, smtputf8=smtputf8)) is not None
    }
    for index, attachment in enumerate(mail.attachments, start=1):
        message.attach(
            filename=safe_filename(attachment.filename),
            data=attachment.data,
            mime_type=_content_type(attachment.content_type),
            # The package keys its files by `uri`, the file name when none is given: a second
            # "image.png" (Slack's name for every pasted screenshot) was dropped. With its own key
            # it is kept, as "image-2.png".
            uri=f"attachment-{index}",
        )
    return message.as_bytes()


def compose_attachments_within(
    attachments: Iterable[OutboundAttachment], limit_bytes: int = MAX_ATTACHED_BYTES
) -> tuple[tuple[OutboundAttachment, ...], tuple[OutboundAttachment, ...]]:
    """Split attachments into those attached (in order, while they fit within ``limit_bytes`` in total)
    and those too large, which the caller turns into links. A file that does not fit does not stop the
    smaller ones after it from being attached."""
    attached: list[OutboundAttachment] = []
    too_large: list[OutboundAttachment] = []
    budget = limit_bytes
    for attachment in attachments:
        if len(attachment.data) <= budget:
            attached.append(attachment)
            budget -= len(attachment.data)
        else:
            too_large.append(attachment)
    return tuple(attached), tuple(too_large)


def clean_header_value(value: str) -> str:
    """A header value with no CR, LF or other control character (header injection) and single spaces."""
    return " ".join(CONTROL_RE.sub(" ", value).split())


def header_text(value: str) -> str:
    """A subject or display name as header text: cleaned (clean_header_value), and, when it holds what
    reads as an encoded word, RFC 2047-encoded whole. A reader decodes the encoded words back to the
    very text written (RFC 2047 section 6.2: the space between encoded words is not text), where
    text written as an encoded word would be decoded into characters nobody wrote, such as a line
    break. The encoded words are separated by spaces, where the header is folded."""
    text = clean_header_value(value)
    if not ENCODED_WORD_RE.search(text):
        return text
    return " ".join(Header(text, "utf-8").encode(maxlinelen=76).split())


def safe_filename(filename: str) -> str:
    """An attachment name without a path, control characters or unbounded length."""
    name = clean_header_value(filename.replace("\\", "/").rsplit("/", 1)[-1]).strip(". ")
    if len(name) > MAX_FILENAME_CHARS:
        _stem, dot, extension = name.rpartition(".")
        keep = extension if dot and len(extension) <= 10 else ""
        name = name[: MAX_FILENAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name or "attachment"


def _headers(mail: OutboundMail) -> dict[str, str]:
    headers: dict[str, str] = {}
    parent = _optional_message_id(mail.in_reply_to)
    references = _references(mail.references, parent)
    if parent:
        headers["In-Reply-To"] = f"<{parent}>"
    if references:
        headers["References"] = " ".join(f"<{reference}>" for reference in references)
    if mail.auto_submitted:
        if not TOKEN_RE.match(mail.auto_submitted):
            raise ValueError(f"not an Auto-Submitted keyword: {mail.auto_submitted!r}")
        # RFC 3834 §5: automatic mail says so, so that auto-responders do not answer it (no mail loops).
        headers["Auto-Submitted"] = mail.auto_submitted
        if mail.auto_submitted.lower() != "no":
            # Exchange and Outlook ignore Auto-Submitted; this stops their out-of-office replies.
            headers["X-Auto-Response-Suppress"] = "All"
    headers.update(_list_unsubscribe(mail.list_unsubscribe_url, mail.list_unsubscribe_mailto))
    for name, value in mail.extra_headers:
        if not HEADER_NAME_RE.match(name) or name.lower() in RESERVED_HEADERS:
            raise ValueError(f"extra header {name!r} is not a valid header name or is set by compose()")
        headers[name] = clean_header_value(value)
    return headers


def _list_unsubscribe(url: str | None, mailto: str | None) -> dict[str, str]:
    # RFC 2369 List-Unsubscribe, so mail clients offer their own "unsubscribe" button.
    targets: list[str] = []
    url = clean_header_value(url or "")
    if url:
        if not URL_RE.match(url):
            raise ValueError(f"List-Unsubscribe URL must be an http(s) URL without spaces: {url!r}")
        targets.append(f"<{url}>")
    mailto = clean_header_value(mailto or "").removeprefix("mailto:")
    if mailto:
        targets.append(f"<mailto:{_address(mailto, 'List-Unsubscribe mailto')}>")
    headers = {"List-Unsubscribe": ", ".join(targets)} if targets else {}
    if url.startswith("https://"):
        # RFC 8058 one-click: the client POSTs to the URL. The RFC allows it for HTTPS URLs only.
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def _references(references: Sequence[str], parent: str | None) -> list[str]:
    # RFC 5322 §3.6.4: the parent's References followed by the parent's Message-ID. Long chains keep
    # the first (the thread's root) and the latest ids, as mail clients do, so the header stays bounded.
    ids: list[str] = []
    for reference in (*references, parent):
        message_id = _optional_message_id(reference)
        if message_id and message_id not in ids:
            ids.append(message_id)
    if parent and ids[-1] != parent:
        ids.remove(parent)
        ids.append(parent)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def _message_id(value: str) -> str:
    message_id = _optional_message_id(value)
    if not message_id:
        raise ValueError(f"not a Message-ID (expected left@right, no spaces): {value!r}")
    return message_id


def _optional_message_id(value: str | None) -> str | None:
    # Ids in In-Reply-To and References may come from customers' mail: an invalid one is dropped.
    if not value:
        return None
    candidate = value.strip().removeprefix("<").removesuffix(">")
    return candidate if MESSAGE_ID_RE.match(candidate) else None


def _parse_address(value: str) -> tuple[str, str]:
    # "Name <addr>" or "addr". Not email.utils.parseaddr: it reads "Evil Bcc: x@y <e@x>" as a group
    # and shows x@y; the address in angle brackets is the one we deliver to, so it is the one shown.
    value = clean_header_value(value)
    match = ANGLE_ADDRESS_RE.match(value)
    name, address = (match.group(1), match.group(2).strip()) if match else ("", value)
    name = name.strip().removeprefix('"').removesuffix('"').replace('\\"', '"').strip()
    return (name, address) if _is_address(address) else ("", "")


def _address_header(name: str, pairs: Sequence[tuple[str, str]], *, smtputf8: bool) -> _ItemFolded | None:
    """To or Cc when an address has a non-ASCII local part; None when emails' header is right (all ASCII).

    Each display name is RFC 2047-encoded as emails does it, and the address is written raw in UTF-8
    (RFC 6532), since RFC 2047 §5 forbids encoded words in an address. In a mail that does not travel
    with SMTPUTF8 (an ASCII recipient) raw UTF-8 may not appear: such an address is shown as an empty
    group named after the encoded mailbox, the downgraded form of RFC 6857, readable and never replied to.
    """
    if all(_is_ascii_local(address) for _display, address in pairs):
        return None
    mailboxes: list[str] = []
    for display, address in pairs:
        if smtputf8 or _is_ascii_local(address):
            mailbox = sanitize_address((display, address), "ascii")
        else:
            mailbox = Header(f"{display} <{address}>" if display else address, "utf-8").encode() + " :;"
        mailboxes.append(mailbox)
    # Folded at any space (between mailboxes, encoded words, name and address), never inside a word.
    items = ", ".join(mailboxes).split()
    return _Utf8ItemFolded(name, items) if smtputf8 else _ItemFolded(name, items)


def _is_ascii_local(address: str) -> bool:
    return address.rpartition("@")[0].isascii()


def _address(value: str, role: str) -> str:
    address = clean_header_value(value)
    if not _is_address(address):
        raise ValueError(f"not an email address for {role}: {address!r}")
    return address


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or not NOT_IN_ADDRESS.isdisjoint(local):
        return False
    # An address literal (store.limits): only the characters an IP literal needs, none of which a
    # header parser reads as syntax.
    return ADDRESS_LITERAL.fullmatch(domain) is not None or NOT_IN_ADDRESS.isdisjoint(domain)


def _content_type(value: str) -> str:
    content_type = value.split(";", 1)[0].strip().lower()
    if not CONTENT_TYPE_RE.match(content_type):
        return OCTET_STREAM
    # RFC 2046 §5: message/* and multipart/* parts may not be base64-encoded, and an attachment is.
    if content_type.startswith(("message/", "multipart/")):
        return OCTET_STREAM
    return content_type
