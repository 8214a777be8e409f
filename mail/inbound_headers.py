"""Header decoding for inbound mail: encoded words, Message-IDs, dates, clean display text.

Everything here works on the *raw* header values (`Message.raw_items()`), never on the header
objects of `email.policy.default`: those raise or give up on the broken headers real mail carries,
and decoding encoded words before splitting an address list would let an encoded comma split a
display name in two (RFC 2047 section 5 forbids encoded words inside addr-specs for that reason).
"""

from __future__ import annotations

import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from mail.inbound_charset import decode_surrogates, decode_text

# RFC 2047 encoded word; the charset may carry an RFC 2231 language suffix ("utf-8*en").
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WHITESPACE = re.compile(r"\s+")
# Bidirectional overrides and isolates reorder what a reader sees ("gpj.exe" shown as "exe.jpg");
# they have no business in a display name, subject or file name.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))

MAX_MESSAGE_ID_CHARS = 250
HASHED_ID_DOMAIN = "servicedesk.invalid"
# Ids kept from one In-Reply-To, References or Message-ID header: the first (a thread's root) and the
# latest, as mail clients trim References (RFC 5322 3.6.4). Each kept id is one lookup when a reply
# finds its ticket, and a header of any size (any content is accepted) must cost little: the
# intake reads the Message-ID on the event loop the whole service shares.
MAX_MESSAGE_IDS = 100
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_BARE_ID_SEPARATORS = re.compile(r"[\s,]+")
# What an id may not hold: whitespace (str.isspace's set, which `\s` is for str patterns), angle
# brackets and control characters (Unicode category Cc). One regex scan, not a call per character.
_NOT_IN_MESSAGE_ID = re.compile(r"[\s<>\x00-\x1f\x7f-\x9f]")


def unfold(value: str) -> str:
    """RFC 5322 section 2.2.3: a folded header is unfolded by removing the CRLF before the WSP."""
    return _FOLD.sub("", value)


def clean_text(value: str) -> str:
    """One line of display text: no CR/LF, no control or bidi characters, single spaces."""
    value = value.translate(_BIDI_CONTROLS)
    value = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value)
    return _WHITESPACE.sub(" ", value).strip()


def _ascii_bytes(text: str) -> bytes:
    try:
        return text.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:
        return text.encode("ascii", errors="replace")


def _decode_word_payload(encoding: str, payload: str) -> bytes:
    data = _ascii_bytes(payload)
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)  # header=True: "_" means space (RFC 2047 4.2)
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return data  # not base64 after all: show the characters as they were


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded words tolerantly (any charset, broken padding, split characters)."""
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_text(bytes(pending), pending_charset))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        # RFC 2047 section 6.2: whitespace between two adjacent encoded words is not displayed.
        if gap and not (gap.isspace() and pending_charset is not None):
            flush()
            out.append(decode_surrogates(gap))
        charset = match.group(1).split("*", 1)[0].lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        # Words of one charset are joined as bytes first: senders split multi-byte characters
        # across words (RFC 2047 forbids it; Outlook and many bulk mailers do it anyway).
        pending.extend(_decode_word_payload(match.group(2), match.group(3)))
        pending_charset = charset
        position = match.end()
    flush()
    out.append(decode_surrogates(value[position:]))
    return "".join(out)


def decode_header_text(value: str) -> str:
    """A raw unstructured header value as clean display text."""
    return clean_text(decode_encoded_words(unfold(value)))


def raw_header_values(message: Message, name: str) -> list[str]:
    """Every raw value of header `name`, unfolded, without any policy parsing."""
    wanted = name.lower()
    return [unfold(str(value)) for key, value in message.raw_items() if key.lower() == wanted]


def first_header(message: Message, name: str) -> str | None:
    values = raw_header_values(message, name)
    return values[0] if values else None


def normalize_message_id(token: str) -> str | None:
    """A Message-ID without <>; over-long ones become a stable hash, so they still match."""
    token = decode_surrogates(token).strip().strip("<>").strip()
    if not token or _NOT_IN_MESSAGE_ID.search(token):
        return None
    if len(token) > MAX_MESSAGE_ID_CHARS:
        return f"sha256-{hashlib.sha256(token.encode('utf-8')).hexdigest()}@{HASHED_ID_DOMAIN}"
    return token


def parse_message_ids(values: Iterable[str]) -> tuple[str, ...]:
    """The ids of In-Reply-To/References headers, in order, without duplicates.

    RFC 5322 wants `<id>`; some clients omit the brackets, so bare tokens with an "@" count too.
    """
    found: dict[str, None] = {}  # ordered, and a lookup each (a list's `in` made this quadratic)
    for value in values:
        bracketed = _BRACKETED_ID.findall(value)
        tokens = bracketed or [t for t in _BARE_ID_SEPARATORS.split(value) if "@" in t]
        for token in _first_and_latest(tokens):
            message_id = normalize_message_id(token)
            if message_id:
                found.setdefault(message_id, None)
    return tuple(_first_and_latest(list(found)))


def _first_and_latest(items: list[str]) -> list[str]:
    """At most MAX_MESSAGE_IDS of `items`: the first and the latest."""
    if len(items) <= MAX_MESSAGE_IDS:
        return items
    return [items[0], *items[len(items) - MAX_MESSAGE_IDS + 1 :]]


def parse_date(value: str | None) -> datetime | None:
    """The Date header as an aware datetime (RFC 5322 "-0000" means UTC of unknown origin)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(clean_text(decode_surrogates(value)))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# Trace fields that relays add or rewrite: the same message delivered twice (a retry after 451,
# a second MX) differs only in these, so they are left out of the fallback id's hash.
_TRACE_FIELDS = (
    b"received",
    b"return-path",
    b"delivered-to",
    b"x-original-to",
    b"x-received",
    b"received-spf",
    b"authentication-results",
    b"arc-seal",
    b"arc-message-signature",
    b"arc-authentication-results",
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_FIELD = re.compile(rb"^message-id[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_FOLDED_BYTES = re.compile(rb"\r?\n(?=[ \t])")


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def hashed_message_id(raw: bytes) -> str:
    """A stable id for a message that has none: a hash of its bytes without trace fields."""
    head, body = _split_head(raw)
    kept = [
        field
        for field in _FOLDED_BYTES.sub(b"", head).splitlines()
        if field.split(b":", 1)[0].strip().lower() not in _TRACE_FIELDS
    ]
    digest = hashlib.sha256(b"\n".join(kept) + b"\n\n" + body.replace(b"\r\n", b"\n")).hexdigest()
    return f"sha256-{digest}@{HASHED_ID_DOMAIN}"


def header_message_id(raw: bytes) -> str:
    """The Message-ID (without <>) from the header block alone, or the hash fallback.

    Cheap enough for the SMTP intake to dedupe before parsing the whole message.
    """
    head, _ = _split_head(raw)
    match = _MESSAGE_ID_FIELD.search(_FOLDED_BYTES.sub(b"", head))
    if match is not None:
        value = match.group(1).decode("ascii", errors="surrogateescape")
        if _is_ambiguous_bare_id(value):
            return hashed_message_id(raw)
        ids = parse_message_ids([value])
        if ids:
            return ids[0]
    return hashed_message_id(raw)


def _is_ambiguous_bare_id(value: str) -> bool:
    """A Message-ID without <> that has several words (`111 shared@x`).

    Picking the word with an "@" would key `111 shared@x` and `222 shared@x` alike, and the
    second mail would be dropped as a redelivery; the hash of the mail keeps them apart while a
    true redelivery (same bytes but for trace fields) still gets the same key.
    """
    return not _BRACKETED_ID.search(value) and len(_BARE_ID_SEPARATORS.split(value.strip())) > 1
