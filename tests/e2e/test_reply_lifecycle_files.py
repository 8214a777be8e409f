"""Files staff attach in Slack reach the customer's email, around the relay's size
limit, with hostile or international names."""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Iterator

import pytest

from sandbox.mail_sink import MailSink
from sandbox.workspace import ALICE
from tests.e2e.conftest import RunningDesk, StartService
from tests.e2e.test_reply_lifecycle import BOB, email_ticket, mails_to, plain

pytestmark = pytest.mark.timeout(120)

RELAY_LIMIT = 400_000


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    with MailSink(data_size_limit=RELAY_LIMIT) as running:
        yield running


def reply_mail(service: RunningDesk, needle: str):
    return service.wait_for(
        lambda: [m for m in mails_to(service, BOB) if needle in plain(m)], f"the reply {needle!r}"
    )[0]


@pytest.mark.parametrize("public", [True, False])
def test_files_around_the_relays_limit(start_service: StartService, public: bool) -> None:
    service = start_service(reply_delay_seconds=0.5, **({} if public else {"public_url": ""}))
    card_ts = email_ticket(service, cc=None)
    fits = os.urandom(250_000)  # about 340 kB as base64: under the relay's 400 kB
    service.post_as(ALICE, "Small file", thread_ts=card_ts, files=[("fits.bin", fits)])
    mail = reply_mail(service, "Small file")
    [attached] = list(mail.message.iter_attachments())
    assert attached.get_filename() == "fits.bin" and attached.get_content() == fits
    big = os.urandom(320_000)  # about 430 kB as base64: the relay refuses it
    service.post_as(ALICE, "Big file", thread_ts=card_ts, files=[("big.bin", big)])
    mail = reply_mail(service, "Big file")
    assert list(mail.message.iter_attachments()) == []
    text = plain(mail)
    assert "big.bin" in text
    if public:
        [link] = re.findall(r"http://\S+/files/\S+", text)
        with urllib.request.urlopen(link.rstrip(")>"), timeout=10) as answer:
            assert answer.read() == big
    else:
        assert "http" not in text.split("Big file", 1)[1].split("--", 1)[0]


def test_hostile_and_international_file_names_never_break_headers(start_service: StartService) -> None:
    service = start_service(reply_delay_seconds=0.5)
    card_ts = email_ticket(service, cc=None)
    files = [
        ("evil\r\nBcc: victim@evil.test\r\n.txt", b"one"),
        ("Résumé 日本語 \u202eexe.pdf", b"two"),
        ('quote" and; semi=colon.txt', b"three"),
        # Characters that mean something in a URL: the copy from Slack's url_private still works.
        ("100% done #2 why?.txt", b"four"),
        ("../../etc/passwd", b"five"),
    ]
    service.post_as(ALICE, "Files", thread_ts=card_ts, files=files)
    mail = reply_mail(service, "Files")
    assert mail.rcpt_tos == [BOB]
    assert mail.message["Bcc"] is None
    assert b"\r\nBcc:" not in mail.raw
    names = [part.get_filename() for part in mail.message.iter_attachments()]
    contents = [part.get_content() for part in mail.message.iter_attachments()]
    assert len(names) == 5, names
    assert all("\r" not in n and "\n" not in n for n in names), names
    assert "Résumé 日本語" in names[1], names
    assert names[3:] == ["100% done #2 why?.txt", "passwd"], names
    assert [c if isinstance(c, bytes) else c.encode() for c in contents] == [
        b"one",
        b"two",
        b"three",
        b"four",
        b"five",
    ]
