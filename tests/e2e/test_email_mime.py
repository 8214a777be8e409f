"""A part hidden by a reused MIME boundary, through SMTP into the running service.

Some mailers (corpus `spamscope/mail_malformed_1.eml`: an iPhone mail carrying a zip) give a nested
multipart the same boundary as its parent. The stdlib parser then ends the parent at the child's closing
delimiter and leaves every later part, attachment included, in the parent's epilogue, where nothing
reads it. DESIGN "Email in" 6: attachments are stored and uploaded into the thread, and malformed MIME
is "shown as well as it can be" -- an attachment whose part is plainly delimited is not silently lost.
"""

from __future__ import annotations

import base64
import struct
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import SUPPORT, RunningDesk

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
BOUNDARY = "----=Part_0118260_79300441.9934604411926"


def reused_boundary_mail() -> bytes:
    encoded = base64.encodebytes(PDF).decode().replace("\n", "\r\n")
    return (
        "From: Bob <bob@customer.test>\r\n"
        f"To: {SUPPORT}\r\nSubject: Invoice attached\r\nMessage-ID: <reused@customer.test>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary="{BOUNDARY}"\r\n\r\n'
        f'--{BOUNDARY}\r\nContent-Type: multipart/alternative;\r\n boundary="{BOUNDARY}"\r\n\r\n'
        f"--{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere is the invoice.\r\n"
        f"--{BOUNDARY}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Here is the invoice.</p>\r\n"
        f"--{BOUNDARY}--\r\n\r\n"
        f'--{BOUNDARY}\r\nContent-Type: application/pdf; name="invoice.pdf"\r\n'
        f'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()


def test_an_attachment_after_a_reused_boundary_reaches_the_thread(service: RunningDesk) -> None:
    assert service.send_mail(reused_boundary_mail())[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "Here is the invoice.")
    uploaded = service.wait_for(
        lambda: [f for f in service.emulator.files.values() if f.name == "invoice.pdf" and f.completed],
        "invoice.pdf uploaded into the thread",
    )
    assert uploaded[0].content == PDF
    # The body is shown once, not once per alternative.
    assert service.thread_text(card.ts).count("Here is the invoice.") <= 2  # fallback text + block


CORPUS_RAW = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "raw"
CORPUS = CORPUS_RAW / "spamscope" / "mail_malformed_1.eml"


@pytest.mark.skipif(not CORPUS.is_file(), reason="no corpus")
def test_the_corpus_iphone_mail_with_a_reused_boundary_keeps_its_zip(service: RunningDesk) -> None:
    assert service.send_mail(CORPUS.read_bytes(), mail_from="femucca@tin.it")[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "Sent from my iPhone")
    uploaded = service.wait_for(
        lambda: [f for f in service.emulator.files.values() if f.name.endswith(".zip") and f.completed],
        "the zip uploaded into the thread",
    )
    assert uploaded[0].name == "20160523_916527.jpg_.zip"


def _tnef_record(level: int, attribute: int, kind: int, data: bytes) -> bytes:
    checksum = struct.pack("<H", sum(data) & 0xFFFF)
    return bytes([level]) + struct.pack("<HHI", attribute, kind, len(data)) + data + checksum


def winmail_dat(files: list[tuple[bytes, bytes]]) -> bytes:
    """A TNEF blob as Outlook writes it: version, code page, then per file its rendering, title, data."""
    blob = b"\x78\x9f\x3e\x22\x01\x00"
    blob += _tnef_record(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))
    blob += _tnef_record(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))
    for name, data in files:
        blob += _tnef_record(2, 0x9002, 0x0006, bytes(14))
        blob += _tnef_record(2, 0x8010, 0x0001, name + b"\0")
        blob += _tnef_record(2, 0x800F, 0x0006, data)
    return blob


def test_the_files_inside_an_outlook_winmail_dat_reach_the_thread(service: RunningDesk) -> None:
    mail = EmailMessage()
    mail["From"] = "Bob <bob@customer.test>"
    mail["To"] = SUPPORT
    mail["Subject"] = "From Outlook"
    mail["Message-ID"] = "<tnef@customer.test>"
    mail.set_content("The report is attached.")
    tnef = winmail_dat([(b"report.pdf", PDF), (b"../notes.txt", b"hello")])
    mail.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    # Not TNEF at all, only named so: kept as it is.
    mail.add_attachment(b"not tnef", maintype="application", subtype="octet-stream", filename="winmail.dat")
    assert service.send_mail(mail.as_bytes())[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "The report is attached.")

    def uploaded() -> dict[str, bytes] | None:
        files = {f.name: f.content for f in service.emulator.files.values() if f.completed}
        return files if len(files) >= 3 else None

    files = service.wait_for(uploaded, "the files uploaded into the thread")
    assert files == {"report.pdf": PDF, "notes.txt": b"hello", "winmail.dat": b"not tnef"}
