"""The SMTP intake stopping (SIGTERM's path): sessions between mails are answered 421 at once, a
mail being sent is finished first, and one still being sent after the grace is cut off unanswered."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from mail.intake import start_smtp_intake
from store.db import Database
from tests.mail.intake_server import (
    SUPPORT,
    TIMEOUT,
    client,
    intake_desk,
    mail_bytes,
    serving_intake,
    stored_items,
)

SHUTTING_DOWN = (421, b"4.3.2 Service shutting down, try again later")


def in_data(port: int) -> smtplib.SMTP:
    """A session that has sent DATA and the first half of a mail."""
    smtp = client(port)
    smtp.mail("bob@customer.test")
    smtp.rcpt(SUPPORT)
    smtp.putcmd("data")
    assert smtp.getreply()[0] == 354
    smtp.send(mail_bytes()[:40])
    return smtp


def test_a_session_between_mails_is_answered_421_and_closed(db: Database, tmp_path: Path) -> None:
    with serving_intake(intake_desk(db, tmp_path)) as served:
        idle = client(served.port)
        served.stop()
        assert idle.getreply() == SHUTTING_DOWN
        with pytest.raises(smtplib.SMTPServerDisconnected):
            idle.getreply()  # and the connection is closed
        assert served.closed.wait(TIMEOUT)


def test_a_mail_being_sent_is_stored_and_answered_before_the_421(db: Database, tmp_path: Path) -> None:
    with serving_intake(intake_desk(db, tmp_path)) as served:
        sending, idle = in_data(served.port), client(served.port)
        served.stop()
        assert idle.getreply() == SHUTTING_DOWN  # the stop has begun
        sending.send(mail_bytes()[40:] + b".\r\n")
        assert sending.getreply()[0] == 250
        assert sending.getreply() == SHUTTING_DOWN
        assert served.closed.wait(TIMEOUT)
    [item] = stored_items(db)
    assert item.raw == mail_bytes()


def test_a_mail_still_being_sent_after_the_grace_is_cut_off_unanswered(db: Database, tmp_path: Path) -> None:
    with serving_intake(intake_desk(db, tmp_path), grace=0.2) as served:
        sending = in_data(served.port)
        served.stop()
        assert served.closed.wait(TIMEOUT)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            sending.getreply()  # no answer: the sender keeps the mail and tries again later
    assert stored_items(db) == []


def test_a_connection_accepted_as_the_stop_begins_is_answered_421(db: Database, tmp_path: Path) -> None:
    """The listener may hand over a connection it accepted just before it closed: a stopping
    intake answers it 421 rather than starting a session it would cut off."""
    desk = intake_desk(db, tmp_path)

    async def connect_while_stopping() -> bytes:
        intake = await start_smtp_intake(desk, host="127.0.0.1", port=0)
        intake.handler.stopping = True  # as `close` sets it, with the listener still open
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", intake.port)
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)  # then the connection closes
            writer.close()
            return answer
        finally:
            await intake.close()

    assert asyncio.run(connect_while_stopping()) == b"421 4.3.2 Service shutting down, try again later\r\n"
    assert stored_items(db) == []
