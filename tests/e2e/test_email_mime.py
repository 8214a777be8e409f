"""A part hidden by a reused MIME boundary, through SMTP into the running service.

Some mailers (corpus `spamscope/mail_malformed_1.eml`: an iPhone mail carrying a zip) give a nested
multipart the same boundary as its parent. The stdlib parser then ends the parent at the child's closing
delimiter and leaves every later part, attachment included, in the parent's epilogue, where nothing
reads it. DESIGN "Email in" 6: attachments are stored and uploaded into the thread, and malformed MIME
is "shown as well as it can be" -- an attachment whose part is plainly delimited is not silently lost.
"""

from __future__ import annotations

import base64
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
