"""Files of a staff reply that reach the customer as links or not at all, through
the real relay (the mail sink with a size limit) and signed Slack events."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from sandbox.mail_sink import MailSink
from sandbox.workspace import ALICE, TRIAGE
from tests.e2e.conftest import StartService
from tests.e2e.test_reply_lifecycle import email_ticket, plain, reactions
from tests.e2e.test_reply_lifecycle_files import RELAY_LIMIT, reply_mail

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    with MailSink(data_size_limit=RELAY_LIMIT) as running:
        yield running


def test_a_small_file_sent_as_a_link_does_not_say_it_is_0_0_mb(start_service: StartService) -> None:
    """The relay refuses the mail for its big file, so every file goes as a link: each is shown
    with its size, and a 2 kB file is not "0.0 MB" (nothing). Staff are told once, though the
    reply went to two people: it was ticked as delivered as if the files had been attached."""
    service = start_service(reply_delay_seconds=0.5)
    card_ts = email_ticket(service)  # Bob, and Carol in Cc: two mails, one reply
    files = [("notes.txt", b"n" * 2_000), ("big.bin", os.urandom(320_000))]
    reply_ts = service.post_as(ALICE, "Two files", thread_ts=card_ts, files=files)
    text = plain(reply_mail(service, "Two files"))
    [line] = [line for line in text.splitlines() if "notes.txt" in line or "notes\\.txt" in line]
    assert re.search(r"/files/\d+/", line), line
    assert "0.0 MB" not in line, line
    service.wait_for(lambda: "white_check_mark" in reactions(service, reply_ts), "the reply delivered")
    told = "Files not attached to the email: notes.txt, big.bin (too large: sent as links)."
    service.wait_for_thread_text(card_ts, told)
    assert service.thread_text(card_ts).count("not attached") == 1


def test_deleting_a_delivered_reply_stops_its_file_links(start_service: StartService) -> None:
    """A reply sent with the wrong customer's file, as a link (too large to attach), then deleted in
    Slack: the email cannot be called back, but the file behind its link is still the desk's to
    serve. It served it to anyone holding the link, for ever."""
    service = start_service(reply_delay_seconds=0.5)
    card_ts = email_ticket(service, cc=None)
    other_customers_file = os.urandom(320_000)  # about 430 kB as base64: the relay refuses it attached
    reply_ts = service.post_as(
        ALICE, "Your invoice", thread_ts=card_ts, files=[("invoice.pdf", other_customers_file)]
    )
    [link] = re.findall(r"http://\S+/files/\S+", plain(reply_mail(service, "Your invoice")))
    link = link.rstrip(")>")
    with urllib.request.urlopen(link, timeout=10) as answer:
        assert answer.read() == other_customers_file
    service.wait_for(lambda: "white_check_mark" in reactions(service, reply_ts), "the reply delivered")

    service.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    service.wait_for_thread_text(card_ts, "Deleted after delivery")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(link, timeout=10)
    assert refused.value.code == 404
    assert "any links to its files no longer work" in service.thread_text(card_ts)
