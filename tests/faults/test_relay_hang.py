"""An outbound relay that accepts the connection and then never answers, when the service stops.

smtplib blocks the thread that sends, for up to the relay timeout (60 s), and the process cannot
exit while that thread waits. The stop cuts such a send off; its row is given back like any row
still in flight on stop (an unknown outcome: pending again, its attempt counted, not failed).
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import subprocess
import threading
from pathlib import Path

from bot import event_loop
from mail.delivery import EmailDelivery
from sandbox.slack_emulator import SlackEmulator
from store.actions.common import enqueue_emails
from store.db import Database
from store.models import OutboxState, Ticket
from store.outbox import Kind
from tests.bot.delivery_kit import emulator_fixture, rows, worker_for  # noqa: F401 (a fixture)
from tests.e2e.test_serve import start_serve, stop
from tests.faults.silent_server import SilentServer, ended_by_client
from tests.mail.test_delivery import make_desk, open_email_ticket

STOP_SECONDS = 10.0  # DESIGN: `serve` exits within 10 s of SIGTERM


def test_a_send_waiting_on_a_silent_relay_is_cut_off_on_stop_and_its_row_given_back(
    db: Database, tmp_path: Path
) -> None:
    with SilentServer() as relay:
        desk = make_desk(db, tmp_path, f"smtp://127.0.0.1:{relay.port}")
        ticket_id = open_email_ticket(desk)
        with desk.db.transaction() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            enqueue_emails(session, ticket, desk.policy, template="acknowledgement")
        worker = worker_for(desk, {Kind.EMAIL.value: EmailDelivery(desk).perform}, drain_timeout=0.1)
        loops: list[asyncio.AbstractEventLoop] = []

        async def work() -> None:
            loops.append(asyncio.get_running_loop())
            await worker.run()

        # The loop `serve` runs on: closing it waits for every thread it handed work to.
        running = threading.Thread(target=event_loop.run, args=(work(),), daemon=True)
        running.start()
        sending = relay.accept()  # the acknowledgement's send waits for the relay's greeting
        loops[0].call_soon_threadsafe(worker.stop)
        running.join(STOP_SECONDS)

        assert not running.is_alive(), "the stop waited for the silent relay"
        assert ended_by_client(sending)
    [row] = rows(db, Kind.EMAIL.value)
    # Given back as a row whose outcome is unknown, as after a crash: no error of its own, not failed.
    assert (row.state, row.claimed_by, row.attempts, row.last_error) == (OutboxState.PENDING, None, 1, None)


def test_serve_exits_0_within_10_s_of_sigterm_while_a_mail_waits_on_a_silent_relay(
    tmp_path: Path, emulator: SlackEmulator, database_url: str
) -> None:
    with SilentServer() as relay:
        running = start_serve(
            tmp_path, emulator, database_url, SERVICEDESK_SMTP_RELAY_URL=f"smtp://127.0.0.1:{relay.port}"
        )
        process: subprocess.Popen[str] = running["process"]  # type: ignore[assignment]
        try:
            with smtplib.SMTP("127.0.0.1", int(str(running["smtp_port"])), timeout=STOP_SECONDS) as client:
                client.sendmail(
                    "bob@customer.test",
                    ["support@localhost"],
                    b"From: bob@customer.test\r\nSubject: Printer\r\nMessage-ID: <p1@customer.test>\r\n"
                    b"\r\nIt burns.\r\n",
                )
            relay.accept()  # the acknowledgement is on its way, waiting for the relay's greeting
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=STOP_SECONDS) == 0
        finally:
            stop(process)
