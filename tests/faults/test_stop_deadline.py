"""`serve` exits 0 within 10 s of SIGTERM (DESIGN.md, Interface contract) while the
worker is inside a Slack call that never answers, and while mail keeps arriving."""

from __future__ import annotations

import contextlib
import signal
import smtplib
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import make_url

from sandbox.slack_emulator import SlackEmulator
from tests.bot.delivery_kit import emulator_fixture  # noqa: F401 (a fixture)
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import wait_until
from tests.e2e.test_serve import start_serve, stop
from tests.faults.freeze_proxy import FreezeProxy
from tests.faults.silent_server import SilentServer

STOP_SECONDS = 10.0  # DESIGN: `serve` exits within 10 s of SIGTERM (the contract's own bound)

MAIL = (
    b"From: bob@customer.test\r\nSubject: Printer {n}\r\n"
    b"Message-ID: <p{n}@customer.test>\r\n\r\nIt burns.\r\n"
)


def test_serve_exits_0_on_sigterm_while_a_slack_call_hangs_and_mail_keeps_coming(
    tmp_path: Path, emulator: SlackEmulator, database_url: str
) -> None:
    with SilentServer() as slack:
        running = start_serve(
            tmp_path, emulator, database_url, SLACK_API_URL=f"http://127.0.0.1:{slack.port}/api/"
        )
        process: subprocess.Popen[str] = running["process"]  # type: ignore[assignment]
        port = int(str(running["smtp_port"]))
        answers: list[int] = []
        done = threading.Event()

        def keep_sending() -> None:
            n = 0
            while not done.is_set():
                n += 1
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=STOP_SECONDS) as client:
                        client.sendmail(
                            "bob@customer.test", ["support@localhost"], MAIL.replace(b"{n}", b"%d" % n)
                        )
                        answers.append(250)
                except (smtplib.SMTPException, OSError):
                    return  # the intake stopped accepting: what a stop means

        sender = threading.Thread(target=keep_sending, daemon=True)
        try:
            sender.start()
            slack.accept()  # the worker's first Slack call (the card), which will never be answered
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=STOP_SECONDS)
            output = process.stdout.read() if process.stdout else ""
            assert code == 0, output[-3000:]
            assert "Traceback" not in output, output[-3000:]
            assert answers, "no mail was accepted before the stop"
        finally:
            done.set()
            stop(process)


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_serve_exits_0_on_sigterm_while_the_database_has_gone_silent(
    tmp_path: Path, emulator: SlackEmulator, database_url: str
) -> None:
    """The network to PostgreSQL stops passing packets (or the server is paused) while the desk works:
    its open connections wait for answers that never come, with no client-side limit. Before: the stop
    gave up on its components after 8 s, then the process waited for those database threads for
    ever (asyncio's executor shutdown, then the interpreter's own join), and never exited."""
    target = make_url(database_url)
    proxy = FreezeProxy(target.host or "127.0.0.1", target.port or 5432)
    try:
        through_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        running = start_serve(tmp_path, emulator, through_proxy)
        process: subprocess.Popen[str] = running["process"]  # type: ignore[assignment]
        port = int(str(running["smtp_port"]))
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=STOP_SECONDS) as client:
                client.sendmail("bob@customer.test", ["support@localhost"], MAIL.replace(b"{n}", b"0"))
            proxy.freeze()

            def arriving() -> None:  # mail arriving while the database is silent: its commit waits
                with (
                    contextlib.suppress(smtplib.SMTPException, OSError),
                    smtplib.SMTP("127.0.0.1", port, timeout=3 * STOP_SECONDS) as client,
                ):
                    client.sendmail("bob@customer.test", ["support@localhost"], MAIL.replace(b"{n}", b"1"))

            threading.Thread(target=arriving, daemon=True).start()
            wait_until(lambda: proxy.held(), "the intake to wait on the silent database")
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail("serve did not exit within 10 s of SIGTERM while the database was silent")
            assert code == 0
        finally:
            stop(process)
    finally:
        proxy.close()
