"""SMTP dialogues with smtplib against the real intake: exact reply codes, and what gets stored."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mail import intake
from store import actions
from store.actions import Actor
from store.context import Desk
from store.db import Database
from store.models import Origin, Participant, Ticket
from tests.mail.intake_server import client, intake_desk, mail_bytes, rcpt_reply, running_intake, stored_items

LIMIT = 200_000


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return intake_desk(db, tmp_path, max_message_bytes=LIMIT)


@pytest.fixture
def port(desk: Desk) -> Iterator[int]:
    with running_intake(desk) as bound:
        yield bound


def issued_keys(desk: Desk) -> tuple[str, str]:
    """A ticket's reply key and its requester's unsubscribe/bounce key."""
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, "bob@customer.test", "Bob")
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject="Help",
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor("Bob", email=customer.email),
        )
        session.flush()
        participant = session.query(Participant).filter_by(ticket_id=ticket.id).one()
        return ticket.reply_key, participant.unsubscribe_key


def test_support_address_in_any_case_is_accepted(port: int) -> None:
    assert rcpt_reply(port, "support@acme.test")[0] == 250
    assert rcpt_reply(port, "SUPPORT@Acme.Test")[0] == 250


@pytest.mark.parametrize(
    "address",
    [
        "bob@elsewhere.test",  # never an open relay
        "support@acme.test.evil.test",
        "sales@acme.test",
        "support+@acme.test",
        "support+short@acme.test",
        "support+" + "a" * 28 + "@acme.test",  # well-formed, but issued by nobody
        "support+unsub-" + "b" * 28 + "@acme.test",
        "support+bounce-" + "c" * 28 + "@acme.test",
        "support+../../etc@acme.test",
    ],
)
def test_other_domains_and_unknown_or_guessed_keys_get_550_5_1_1(port: int, address: str) -> None:
    code, text = rcpt_reply(port, address)
    assert (code, text.split()[0]) == (550, b"5.1.1")


def test_keys_the_desk_issued_are_accepted(desk: Desk, port: int) -> None:
    reply_key, participant_key = issued_keys(desk)
    assert rcpt_reply(port, f"support+{reply_key}@acme.test")[0] == 250
    assert rcpt_reply(port, f"Support+{reply_key.upper()}@ACME.test")[0] == 250
    assert rcpt_reply(port, f"support+unsub-{participant_key}@acme.test")[0] == 250
    assert rcpt_reply(port, f"support+bounce-{participant_key}@acme.test")[0] == 250
    # A key of one kind is not a key of another.
    assert rcpt_reply(port, f"support+{participant_key}@acme.test")[0] == 550
    assert rcpt_reply(port, f"support+unsub-{reply_key}@acme.test")[0] == 550


def test_a_stored_mail_is_answered_250_and_kept_raw_with_its_envelope(desk: Desk, port: int) -> None:
    raw = mail_bytes()
    with client(port) as smtp:
        smtp.mail("bob@customer.test")
        smtp.rcpt("support@acme.test")
        code, text = smtp.data(raw)

    assert (code, text.split()[0]) == (250, b"2.0.0")
    [item] = stored_items(desk.db)
    assert item.kind == "email" and item.raw == raw
    assert item.dedupe_key == "email:m1@customer.test"
    assert item.payload["mail_from"] == "bob@customer.test"
    assert item.payload["rcpt_tos"] == ["support@acme.test"]


def test_the_same_message_id_twice_gets_250_and_changes_nothing(desk: Desk, port: int) -> None:
    with client(port) as smtp:
        smtp.sendmail("bob@customer.test", ["support@acme.test"], mail_bytes(body="first"))
        smtp.sendmail("bob@customer.test", ["support@acme.test"], mail_bytes(body="changed, same id"))

    [item] = stored_items(desk.db)
    assert b"first" in (item.raw or b"")


def test_a_mail_without_message_id_is_keyed_by_its_bytes(desk: Desk, port: int) -> None:
    with client(port) as smtp:
        for body in ("one", "one", "two"):
            smtp.sendmail("bob@customer.test", ["support@acme.test"], mail_bytes(None, body=body))

    assert len(stored_items(desk.db)) == 2


def test_size_is_advertised_and_larger_mail_gets_552(desk: Desk, port: int) -> None:
    with client(port) as smtp:
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == LIMIT
        code, _ = smtp.mail("bob@customer.test", [f"SIZE={LIMIT + 1}"])
        assert code == 552
    big = mail_bytes(body="x" * 70 + "\r\n") * 1 + b"y" * (LIMIT + 10)
    with client(port) as smtp:
        smtp.mail("bob@customer.test")  # no SIZE announced: refused after DATA instead
        smtp.rcpt("support@acme.test")
        code, _ = smtp.data(big)
        assert code == 552
    assert stored_items(desk.db) == []


def test_recipients_past_the_cap_get_452(port: int) -> None:
    with client(port) as smtp:
        smtp.mail("bob@customer.test")
        codes = [smtp.rcpt("support@acme.test")[0] for _ in range(intake.MAX_RECIPIENTS + 2)]
    assert codes[: intake.MAX_RECIPIENTS] == [250] * intake.MAX_RECIPIENTS
    assert codes[intake.MAX_RECIPIENTS :] == [452, 452]


def test_lines_longer_than_rfc_5321_allows_are_still_accepted(desk: Desk, port: int) -> None:
    with client(port) as smtp:
        smtp.sendmail("bob@customer.test", ["support@acme.test"], mail_bytes(body="<p>" + "z" * 5000))
    [item] = stored_items(desk.db)
    assert b"z" * 5000 in (item.raw or b"")


def test_connections_past_the_limit_get_421(
    desk: Desk, port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(intake, "MAX_SESSIONS", 1)
    with client(port) as first:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", port, timeout=10)
        assert refused.value.smtp_code == 421
        assert first.noop()[0] == 250  # after the refused connection's end was handled on the loop
    # A refusal is routine under load: it must not log an error (a traceback) each time.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_one_client_cannot_take_every_connection(
    desk: Desk, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One host holding every session (a spammer, or a broken MTA looping) left every other sender
    with 421 for as long as it liked: the desk's mail was delayed by the retry intervals of everyone
    else. A client past its share is refused; the others are still served."""
    monkeypatch.setattr(intake, "MAX_SESSIONS", 4)
    monkeypatch.setattr(intake, "MAX_SESSIONS_PER_CLIENT", 2, raising=False)
    with client(port) as first, client(port) as second:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", port, timeout=10)
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (421, b"4.7.0")
        # Another host (another loopback address) still gets in, and the first two still work.
        other = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
        with other:
            assert other.ehlo("other.example")[0] == 250
        assert first.noop()[0] == second.noop()[0] == 250
    # Once they ended, the first host may connect again.
    with client(port) as again:
        assert again.noop()[0] == 250


def test_malformed_content_with_a_good_envelope_is_accepted(desk: Desk, port: int) -> None:
    junk = b"\xff\xfe not a header at all\r\n\r\n\x00\x01 binary \xc3\x28 junk\r\n"
    with client(port) as smtp:
        smtp.sendmail("", ["support@acme.test"], junk)  # the null sender too (RFC 5321 4.5.5)
    [item] = stored_items(desk.db)
    assert item.raw == junk and item.payload["mail_from"] == ""


def test_ticket_number_is_not_a_key(desk: Desk, port: int) -> None:
    issued_keys(desk)
    with desk.db.transaction() as session:
        ticket = session.query(Ticket).one()
        assert ticket.number == 1
    assert rcpt_reply(port, "support+1@acme.test")[0] == 550


def test_a_client_looping_on_commands_is_cut_off_with_421(port: int) -> None:
    with client(port) as smtp:
        codes = [smtp.noop()[0] for _ in range(intake.COMMAND_LIMITS["*"])]
        assert set(codes) == {250}
        assert smtp.docmd("NOOP")[0] == 421


def test_the_intake_answers_while_the_default_executor_is_all_taken(desk: Desk) -> None:
    """The worker's threads (asyncio's default executor) may all be busy: a 250 does not wait."""
    release = threading.Event()

    async def occupy_default_executor() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        loop.run_in_executor(None, release.wait, 30)

    with running_intake(desk, setup=occupy_default_executor) as bound:
        try:
            assert rcpt_reply(bound, "support+" + "k" * 28 + "@acme.test")[0] == 550  # a key looked up
            with client(bound) as smtp:
                smtp.mail("bob@customer.test")
                smtp.rcpt("support@acme.test")
                code, _ = smtp.data(mail_bytes("<busy@customer.test>"))
            assert code == 250
        finally:
            release.set()
    assert [item.dedupe_key for item in stored_items(desk.db)] == ["email:busy@customer.test"]


def test_a_large_mail_still_arriving_is_not_cut_off_by_the_session_timeout(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session timeout ran from the DATA command, as if the session were idle all through the
    message: a mail that took longer than it to send (a large attachment over a slow line) was cut
    off every time it was sent, and bounced once its sender gave up."""
    monkeypatch.setattr(intake, "SESSION_TIMEOUT_SECONDS", 0.5)
    body = "\r\n".join("a line of a large attachment, " + "z" * 40 for _ in range(2_000))
    message = mail_bytes(body=body)
    with running_intake(desk) as bound, client(bound) as smtp:
        smtp.mail("bob@customer.test")
        smtp.rcpt("support@acme.test")
        assert smtp.docmd("DATA")[0] == 354
        pieces = [message[start : start + 8_000] for start in range(0, len(message), 8_000)]
        for piece in pieces:  # about two seconds in all, never idle for long
            smtp.send(piece)
            time.sleep(0.15)
        smtp.send(b".\r\n")
        assert smtp.getreply()[0] == 250
    [item] = stored_items(desk.db)
    assert item.raw == message


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "a few bytes at a time"])
def test_a_mail_that_stops_arriving_or_trickles_is_still_cut_off(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, trickle: bool
) -> None:
    monkeypatch.setattr(intake, "SESSION_TIMEOUT_SECONDS", 0.5)
    with running_intake(desk) as bound, client(bound) as smtp:
        smtp.mail("bob@customer.test")
        smtp.rcpt("support@acme.test")
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(mail_bytes()[:40])
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            # Slower than MIN_DATA_BYTES_PER_SECOND: a session held open, not a message arriving.
            for _ in range(100 if trickle else 0):
                smtp.send(b"z")
                time.sleep(0.1)
            smtp.getreply()
    assert stored_items(desk.db) == []
