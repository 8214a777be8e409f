"""Edge first, end to end: while mail pours in, the worker is slowed, never stopped.

The service runs with a pace that always applies (one mail a second is already "busy"), so every
unit of the worker's work waits for its turn; every ticket still gets its card, its message and
its acknowledgement. (Waits bound a broken test; no assertion is about speed.)
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from bot.worker import WorkerConfig
from tests.e2e.conftest import SUPPORT, StartService, message_text

pytestmark = pytest.mark.timeout(120)

MAILS = 12


def mail_from(sender: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="customer.test")
    message.set_content(f"Body of {subject}.")
    return message.as_bytes()


def test_paced_worker_still_turns_every_mail_into_a_ticket(start_service: StartService) -> None:
    service = start_service(worker_config=WorkerConfig(busy_intake_rate=0.5, busy_worker_rate=20))
    senders = [f"c{index}@customer.test" for index in range(MAILS)]
    for index, sender in enumerate(senders):
        assert service.send_mail(mail_from(sender, f"Printer {index}"), mail_from=sender)[0] == 250
    # The pace itself makes this take most of the usual bound on a loaded machine: a wider one.
    service.wait_for(lambda: len(service.cards()) == MAILS or None, f"{MAILS} cards", timeout=90)
    acks = service.wait_for_mails(MAILS)
    assert sorted(mail.rcpt_tos[0] for mail in acks) == sorted(senders)
    shown = [message_text(card) for card in service.cards()]
    assert all(any(f"Printer {index}" in text for text in shown) for index in range(MAILS))
