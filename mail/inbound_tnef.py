"""The files inside a TNEF `winmail.dat`, which Outlook and Exchange send in place of attachments.

Outlook with "Rich Text" format wraps a mail's attachments in one `application/ms-tnef` part named
`winmail.dat`; no mail client outside Outlook opens it, so staff would see one unreadable file instead
of the customer's documents. Its files are taken out and kept as ordinary attachments. Anything that
cannot be read (not TNEF, truncated, too many records to walk cheaply) keeps the `winmail.dat` as it is:
the file is never lost, and the original message holds it too.
"""

from __future__ import annotations

import logging
import struct

from tnefparse import TNEF

log = logging.getLogger(__name__)

TNEF_TYPES = {"application/ms-tnef", "application/vnd.ms-tnef"}
_SIGNATURE = b"\x78\x9f\x3e\x22"
# The decoder copies the rest of the data for every record it reads: a file of many records costs
# time quadratic in its size. Real winmail.dat files hold a few dozen records; past these bounds (about
# a second of copying) the file is kept whole rather than decoded.
MAX_RECORDS = 2_000
MAX_COPIED_BYTES = 8 * 1024**3
_RECORD_OVERHEAD = 11  # level (1), attribute (4), length (4), checksum (2)
_HEADER = 6  # signature (4), key (2)


def is_tnef(content_type: str, filename: str | None) -> bool:
    return content_type in TNEF_TYPES or (filename or "").strip().lower() == "winmail.dat"


def tnef_files(data: bytes) -> list[tuple[str, bytes]] | None:
    """(name, bytes) of each file in a TNEF blob, in order; None when it is not TNEF, holds no file,
    or cannot be read (the caller keeps the blob itself)."""
    records = _records(data)
    if not data.startswith(_SIGNATURE) or records is None:
        return None
    try:
        decoded = TNEF(data)
        if len(decoded.objects) != records:
            # The decoder stops short of a last record of a byte or less: that file would be lost.
            log.info("a winmail.dat was read only in part; kept as it is")
            return None
        codepage = decoded.codepage if isinstance(decoded.codepage, str) else "cp1252"
        files = [(_name(item, codepage), bytes(item.data)) for item in decoded.attachments]
    except Exception:  # a third-party parser on hostile input: any failure means "keep the blob"
        log.info("a winmail.dat could not be read; kept as it is", exc_info=True)
        return None
    return files or None


def _records(data: bytes) -> int | None:
    """How many records the blob holds; None past the bounds above."""
    offset, records, copied = _HEADER, 0, 0
    while offset + _RECORD_OVERHEAD <= len(data):
        copied += len(data) - offset
        (length,) = struct.unpack_from("<I", data, offset + 5)
        offset += _RECORD_OVERHEAD + length
        records += 1
        if records > MAX_RECORDS or copied > MAX_COPIED_BYTES:
            return None
    return records


def _name(item: object, codepage: str) -> str:
    """The file's long name, else its title; Outlook writes the title in the sender's code page,
    which the decoder reads as UTF-8 (and fails on "Résumé.pdf")."""
    for read in ("long_filename", "name"):
        try:
            value = getattr(item, read)
            name = value() if callable(value) else value
        except Exception:  # not UTF-8: read in the code page below
            continue
        if isinstance(name, bytes):
            name = name.decode(codepage, errors="replace")
        if isinstance(name, str) and name.strip("\x00 "):
            return name.strip("\x00")
    raw = getattr(item, "_name", b"")
    if isinstance(raw, bytes):
        try:
            return raw.decode(codepage, errors="replace").strip("\x00")
        except LookupError:  # a code page Python does not know
            return raw.decode("cp1252", errors="replace").strip("\x00")
    return ""
