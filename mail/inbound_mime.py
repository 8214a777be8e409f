"""Walk a parsed MIME tree: the body parts to show, the files to keep, within depth limits.

RFC 2046 structure rules, applied leniently:

- `multipart/alternative` holds one content in several forms, from plainest to richest; the
  plain text is preferred (the design says so: it is what the sender wrote, not rendered), the
  HTML used when there is no readable text. Files of the unused forms are still kept.
- `multipart/related` (RFC 2387) is a root document plus resources, usually inline images.
- Every other multipart is a sequence: inline text parts are the body, in order, the rest files.
- A forwarded `message/rfc822` is kept as an .eml file and its text shown after the body.
- Deeper than `max_depth`, structure is no longer followed: text found below is shown as text.
- A multipart whose declared boundary never appears (broken senders, spam) is re-read with the
  boundary its delimiter lines actually use.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field, replace
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from email.policy import Policy
from email.utils import collapse_rfc2231_value
from typing import Literal

from mail.inbound_charset import decode_text
from mail.inbound_data_images import MAX_DATA_IMAGES, take_data_images
from mail.inbound_headers import clean_text, decode_header_text, first_header
from mail.inbound_tnef import is_tnef, tnef_files

MAX_PARTS = 1_000
MAX_TEXT_CHARS = 1_000_000
# Parts that are a signature over the message, not content anybody reads.
_SIGNATURE_TYPES = {
    "application/pgp-signature",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
}
_CONTENT_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,128}$")
_BOUNDARY_LINE = re.compile(r"^--([^\s\"]{1,200})[ \t]*\r?$", re.MULTILINE)
_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')
MAX_FILENAME_BYTES = 255


@dataclass(frozen=True)
class _Mode:
    files_only: bool = False  # keep files, show no text (unchosen alternatives, related resources)
    in_report: bool = False  # inside multipart/report: a returned message is a file, not text
    in_forward: bool = False  # inside a forwarded message that is already kept whole as .eml


@dataclass
class Segment:
    kind: Literal["text", "html"]
    content: str


@dataclass
class RawAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None


@dataclass
class MimeWalk:
    segments: list[Segment] = field(default_factory=list)
    attachments: list[RawAttachment] = field(default_factory=list)
    html_sources: list[str] = field(default_factory=list)  # every HTML part, for cid: references
    truncated: bool = False


def content_type_of(part: Message) -> str:
    content_type = part.get_content_type().lower()
    return content_type if _CONTENT_TYPE.match(content_type) else "application/octet-stream"


def sanitize_filename(name: str | None, index: int, content_type: str) -> str:
    """A file name safe to show and to offer for download; never used as a storage path."""
    cleaned = ""
    if name:
        cleaned = clean_text(decode_header_text(name) if "=?" in name else clean_text(name))
        cleaned = re.split(r"[\\/]", cleaned)[-1]  # path parts ("../../etc/passwd", "C:\\x")
        cleaned = _UNSAFE_FILENAME_CHARS.sub("_", cleaned).strip(" .")
    if not cleaned:
        extension = mimetypes.guess_extension(content_type) or ".bin"
        return f"attachment-{index}{extension}"
    encoded = cleaned.encode("utf-8")
    if len(encoded) > MAX_FILENAME_BYTES:
        stem, dot, extension = cleaned.rpartition(".")
        suffix = f".{extension}" if dot and 0 < len(extension.encode("utf-8")) <= 16 else ""
        budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
        base = stem if suffix else cleaned
        cleaned = base.encode("utf-8")[:budget].decode("utf-8", errors="ignore") + suffix
    return cleaned


def payload_of(part: Message) -> str | list[Message]:
    """The undecoded payload: the sub-parts of a container, or the body text of a leaf."""
    try:
        payload = part.get_payload()
    except (ValueError, LookupError):
        # CPython decodes an 8-bit payload with the declared charset here, and raises when the
        # codec machinery rejects the name (one holding a NUL byte, for instance).
        data = part.get_payload(decode=True)
        return data.decode("ascii", errors="surrogateescape") if isinstance(data, bytes) else ""
    if isinstance(payload, list):
        return [item for item in payload if isinstance(item, Message)]
    return payload if isinstance(payload, str) else ""


def _decoded_payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    raw = payload_of(part)
    if isinstance(raw, list):  # message/* parts (delivery-status, rfc822-headers) parse as messages
        return b"\n".join(_message_bytes(item) or b"" for item in raw)
    return raw.encode("utf-8", errors="surrogateescape")


def _param(part: Message, name: str, *, lower: bool = True) -> str:
    """A Content-Type parameter as clean text ("" when absent), RFC 2231 continuations joined."""
    value = part.get_param(name, "", header="content-type")
    if isinstance(value, tuple):
        value = collapse_rfc2231_value(value)
    text = clean_text(str(value))
    return text.lower() if lower else text


def _is_body_text(part: Message) -> bool:
    return content_type_of(part) in {"text/plain", "text/html"} and not _is_attachment(part)


def _is_attachment(part: Message) -> bool:
    disposition = clean_text(first_header(part, "Content-Disposition") or "").lower()
    return disposition.startswith("attachment") or bool(part.get_filename())


class _Walker:
    def __init__(self, parse_policy: Policy, max_depth: int) -> None:
        self.policy = parse_policy
        self.max_depth = max_depth
        self.result = MimeWalk()
        self.parts_seen = 0
        self.data_images = 0

    # -- leaves -------------------------------------------------------------------------

    def _text(self, part: Message) -> str:
        text = decode_text(_decoded_payload(part), part.get_content_charset())
        if len(text) > MAX_TEXT_CHARS:
            self.result.truncated = True
            text = text[:MAX_TEXT_CHARS]
        if _param(part, "format") == "flowed":
            text = unflow(text, delsp=_param(part, "delsp") == "yes")
        return text

    def _attach(self, part: Message, content_type: str, data: bytes | None = None) -> None:
        if content_type in _SIGNATURE_TYPES:
            return
        payload = _decoded_payload(part) if data is None else data
        if is_tnef(content_type, part.get_filename()) and self._attach_tnef(payload):
            return
        content_id = clean_text(first_header(part, "Content-ID") or "").strip("<>").strip()
        index = len(self.result.attachments) + 1
        self.result.attachments.append(
            RawAttachment(
                filename=sanitize_filename(part.get_filename(), index, content_type),
                content_type=content_type,
                data=payload,
                content_id=content_id or None,
            )
        )

    def _attach_tnef(self, data: bytes) -> bool:
        """Keep the files of an Outlook winmail.dat instead of the winmail.dat (mail.inbound_tnef)."""
        files = tnef_files(data)
        for name, content in files or ():
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self._attach_named(name, content_type, content)
        return files is not None

    def _take_data_images(self, html: str) -> str:
        def add(filename: str, content_type: str, data: bytes, content_id: str) -> None:
            self.result.attachments.append(RawAttachment(filename, content_type, data, content_id))

        html, added = take_data_images(
            html, add, first_number=self.data_images + 1, room=MAX_DATA_IMAGES - self.data_images
        )
        self.data_images += added
        return html

    def _leaf(self, part: Message, content_type: str, mode: _Mode) -> None:
        if content_type in {"text/plain", "text/html"} and not _is_attachment(part):
            text = self._text(part)
            if content_type == "text/html":
                text = self._take_data_images(text)
                self.result.html_sources.append(text)
            if not mode.files_only:
                self.result.segments.append(Segment("html" if content_type == "text/html" else "text", text))
            return
        if not (mode.files_only and content_type.startswith("text/") and not _is_attachment(part)):
            self._attach(part, content_type)

    # -- structure ----------------------------------------------------------------------

    def walk(self, part: Message, depth: int, mode: _Mode) -> None:
        self.parts_seen += 1
        if self.parts_seen > MAX_PARTS:
            self.result.truncated = True
            return
        if depth > self.max_depth:
            self.result.truncated = True
            self._flatten(part, mode)
            return
        content_type = content_type_of(part)
        payload = payload_of(part)
        if content_type.startswith("multipart/"):
            children = payload if isinstance(payload, list) else []
            if not children:
                self._broken_multipart(part, depth, mode)
            elif content_type == "multipart/alternative":
                self._alternative(children, depth, mode)
            elif content_type == "multipart/related":
                self._related(part, children, depth, mode)
            else:
                report = replace(mode, in_report=mode.in_report or content_type == "multipart/report")
                self._sequence(part, children, depth, report)
            self._recover_epilogue(part, depth, mode)
        elif content_type in {"message/rfc822", "message/global"} and isinstance(payload, list) and payload:
            self._forwarded(part, payload[0], depth, mode)
        else:
            self._leaf(part, content_type, mode)

    def _sequence(self, part: Message, children: list[Message], depth: int, mode: _Mode) -> None:
        """The children of a mixed (or unknown) multipart, in order.

        A child `multipart/alternative` that reuses its parent's boundary (corpus
        `mail_malformed_1.eml`) comes out empty, its forms parsed as the parent's next children:
        those text and HTML siblings are read again as the alternative they were sent as, so the
        body is shown once."""
        boundary = part.get_boundary()
        index = 0
        while index < len(children):
            child = children[index]
            index += 1
            if (
                boundary
                and content_type_of(child) == "multipart/alternative"
                and child.get_boundary() == boundary
                and not isinstance(payload_of(child), list)
            ):
                forms: list[Message] = []
                while index < len(children) and _is_body_text(children[index]):
                    forms.append(children[index])
                    index += 1
                if forms:
                    self.result.truncated = True  # not the structure declared: say it was repaired
                    self.parts_seen += 1
                    self._alternative(forms, depth + 1, mode)
                    continue
            self.walk(child, depth + 1, mode)

    def _recover_epilogue(self, part: Message, depth: int, mode: _Mode) -> None:
        """Parts left after a multipart's closing delimiter, when a nested multipart reused its
        boundary and closed it early (corpus `mail_malformed_1.eml`: the attachment sat there).
        Delimiter lines of the multipart's own boundary in its epilogue start real parts."""
        epilogue = part.epilogue
        boundary = part.get_boundary()
        if not epilogue or not boundary or f"--{boundary}" not in epilogue:
            return
        if not any(match.group(1) == boundary for match in _BOUNDARY_LINE.finditer(epilogue)):
            return
        head = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        data = (head + epilogue).encode("utf-8", errors="surrogateescape")
        recovered = BytesParser(policy=self.policy).parsebytes(data)
        children = payload_of(recovered)
        if isinstance(children, list) and children:
            self.result.truncated = True  # not the structure declared: say it was repaired
            for child in children:
                self.walk(child, depth + 1, mode)

    def _alternative(self, children: list[Message], depth: int, mode: _Mode) -> None:
        def readable(child: Message, wanted: str) -> bool:
            return content_type_of(child) == wanted and bool(self._peek_text(child))

        chosen = next((c for c in children if readable(c, "text/plain")), None)
        chosen = chosen or next((c for c in children if readable(c, "text/html")), None)
        nested = (c for c in reversed(children) if content_type_of(c).startswith("multipart/"))
        chosen = chosen or next(nested, None)
        chosen = chosen or children[-1]
        for child in children:
            self.walk(child, depth + 1, mode if child is chosen else replace(mode, files_only=True))

    def _peek_text(self, part: Message) -> str:
        return decode_text(_decoded_payload(part)[:4096], part.get_content_charset()).strip()

    def _related(self, part: Message, children: list[Message], depth: int, mode: _Mode) -> None:
        start = _param(part, "start", lower=False).strip("<>")

        def content_id(child: Message) -> str:
            return (first_header(child, "Content-ID") or "").strip(" <>")

        root = next((c for c in children if start and content_id(c) == start), children[0])
        for child in children:
            self.walk(child, depth + 1, mode if child is root else replace(mode, files_only=True))

    def _forwarded(self, part: Message, inner: Message, depth: int, mode: _Mode) -> None:
        subject = decode_header_text(first_header(inner, "Subject") or "")
        # A message forwarded inside a forwarded message is already in the outer .eml: keeping
        # each level again would cost quadratic time and space on a deep chain.
        if not mode.in_forward:
            data = _message_bytes(inner)
            if data is None:
                self.result.truncated = True
            else:
                name = part.get_filename() or (f"{subject[:100]}.eml" if subject else "forwarded-message.eml")
                self._attach_named(name, "message/rfc822", data)
        if mode.files_only or mode.in_report:
            return  # a returned message in a bounce is evidence, not text to show
        sender = decode_header_text(first_header(inner, "From") or "")
        intro = f"---------- Forwarded message ----------\nFrom: {sender}\nSubject: {subject}\n"
        self.result.segments.append(Segment("text", intro))
        self.walk(inner, depth + 1, replace(mode, in_forward=True))

    def _attach_named(self, name: str, content_type: str, data: bytes) -> None:
        index = len(self.result.attachments) + 1
        filename = sanitize_filename(name, index, content_type)
        self.result.attachments.append(RawAttachment(filename, content_type, data, None))

    def _broken_multipart(self, part: Message, depth: int, mode: _Mode) -> None:
        body = payload_of(part)
        text = body if isinstance(body, str) else ""
        boundary = _BOUNDARY_LINE.search(text)
        if boundary is not None:
            head = f'Content-Type: multipart/mixed; boundary="{boundary.group(1)}"\r\n\r\n'
            data = (head + text).encode("utf-8", errors="surrogateescape")
            recovered = BytesParser(policy=self.policy).parsebytes(data)
            if payload_of(recovered):
                self.result.truncated = True  # not what the sender declared: say it was repaired
                self.walk(recovered, depth + 1, mode)
                return
        if text.strip() and not mode.files_only:
            self.result.segments.append(Segment("text", text[:MAX_TEXT_CHARS]))

    def _flatten(self, part: Message, mode: _Mode) -> None:
        """Below the depth limit: show the text of every text part, follow no more structure."""
        stack = [part]
        while stack and self.parts_seen <= MAX_PARTS and not mode.files_only:
            current = stack.pop()
            self.parts_seen += 1
            payload = payload_of(current)
            if isinstance(payload, list):
                stack.extend(reversed(payload))
            elif content_type_of(current).startswith(("text/", "multipart/")) and isinstance(payload, str):
                kind: Literal["text", "html"] = "html" if content_type_of(current) == "text/html" else "text"
                self.result.segments.append(Segment(kind, self._text(current)))


def _message_bytes(message: Message) -> bytes | None:
    """A parsed message serialised again, or None when the generator cannot do it."""
    try:
        return message.as_bytes(policy=email_policy.compat32)
    except (ValueError, TypeError, LookupError, UnicodeError, RecursionError):
        # Some broken messages cannot be re-serialised, and the generator recurses per nesting
        # level. The caller keeps the whole original anyway; the text is still shown.
        return None


def unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines, keep quote depth, unstuff spaces."""
    out: list[str] = []
    pending: tuple[int, str] | None = None
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r")
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (section 4.4)
        soft = content.endswith(" ") and content != "-- "  # "-- " is the signature separator
        if soft and delsp:
            content = content[:-1]
        if pending is not None and pending[0] == depth:
            pending = (depth, pending[1] + content)
        else:
            if pending is not None:
                out.append(_quoted(*pending))
            pending = (depth, content)
        if not soft:
            out.append(_quoted(*pending))
            pending = None
    if pending is not None:
        out.append(_quoted(*pending))
    return "\n".join(out)


def _quoted(depth: int, content: str) -> str:
    return (">" * depth + " " + content) if depth else content


def walk_message(message: Message, *, parse_policy: Policy, max_depth: int) -> MimeWalk:
    walker = _Walker(parse_policy, max_depth)
    walker.walk(message, 0, _Mode())
    return walker.result
