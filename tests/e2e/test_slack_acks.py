"""Slack's events are stored and answered while the rest of the service waits on the database."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, make_url, select, text

from bot.edge_threads import EDGE_THREADS
from sandbox import RequestSender
from sandbox.workspace import ALICE, CONNECT, DAN, HELP, SIGNING_SECRET, TRIAGE
from store.models import Direction, Message, Ticket
from store.postgresql import MAX_OVERFLOW, POOL_SIZE
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import WAIT_SECONDS, StartService
from tests.e2e.test_slack import Desk
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(180)


def _mail(sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@acme.test"
    message["Subject"] = f"Help for {sender}"
    message["Message-ID"] = make_msgid(domain="customer.test")
    message.set_content("The printer is on fire.")
    return message.as_bytes().replace(b"\n", b"\r\n")


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_slack_is_answered_while_the_worker_waits_on_locked_tickets(start_service: StartService) -> None:
    """The worker's deliveries wait on tickets another transaction holds (a long merge, a slow
    database): a Slack event, which needs none of them, is still stored and answered at once. Were
    the edge's store waiting behind the worker's database work, Slack would time out and retry
    every event for as long as that lasted."""
    # More deliveries waiting at once than asyncio's default pool has threads (CPUs + 4, at most 32).
    threads = min((os.cpu_count() or 1) + 4, 32)
    if threads + EDGE_THREADS > POOL_SIZE + MAX_OVERFLOW:
        # On a machine this large the worker's threads could hold every pooled connection: the
        # edge would then wait for a connection, not a thread, which this test does not measure.
        pytest.skip("asyncio's default pool here is as large as the database connection pool")
    count = threads + 2
    desk = Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=6.0, acknowledge=False))
    for n in range(count):
        sender = f"customer{n}@customer.test"
        assert desk.service.send_mail(_mail(sender), mail_from=sender)[0] == 250
    cards = desk.wait(lambda: (ts := [desk.card_ts(n + 1) for n in range(count)]) and ts, f"{count} cards")
    for card_ts in cards:
        desk.emulator.user_post(ALICE, TRIAGE, "Turn it off and on again.", thread_ts=card_ts)

    def replies_stored() -> bool:
        with desk.db.read() as session:
            found = session.scalar(
                select(func.count()).select_from(Message).where(Message.direction == Direction.OUTBOUND)
            )
        return found == count

    desk.wait(replies_stored, "the replies stored")
    holding, release = threading.Event(), threading.Event()

    def hold_the_tickets() -> None:
        with desk.db.transaction() as session:
            session.execute(select(Ticket.id).with_for_update())
            holding.set()
            release.wait(WAIT_SECONDS * 3)

    holder = threading.Thread(target=hold_the_tickets)
    holder.start()
    try:
        assert holding.wait(WAIT_SECONDS)

        # Deliveries for these tickets (receipts, copies of the replies, the replies themselves)
        # record their outcome under the ticket's lock: each such worker thread now waits.
        def waiting_on_locks() -> bool:
            with desk.db.read() as session:
                waiting = session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            return (waiting or 0) >= threads

        desk.wait(waiting_on_locks, "the worker's threads waiting on the tickets")
        posted = desk.emulator.user_post(DAN, CONNECT, "Is anyone there?")
        [event] = [e for e in desk.emulator.events if e["event"].get("ts") == posted]
        desk.wait(
            lambda: any(
                a.status == 200
                for d in desk.emulator.deliveries
                if d.event_id == event["event_id"]
                for a in d.attempts
            ),
            "the event answered while the tickets are held",
        )
        # `/desk` too answers in time: its staff check, its lookups and its verb need no ticket.
        command = desk.emulator.user_command(ALICE, TRIAGE, "/desk", "labels")
        answer = command.wait(WAIT_SECONDS).ack_payload or {}
        assert str(answer.get("text") or "").startswith("No labels yet"), (command.delivery, answer)
        # And the load balancer's health check: the database is there, the node is fine.
        with urllib.request.urlopen(f"{desk.service.http_url}/healthz", timeout=WAIT_SECONDS) as health:
            assert health.status == 200
    finally:
        release.set()
        holder.join()
    desk.wait_thread_text(CONNECT, posted, f"Ticket #{count + 1} opened")


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_an_event_that_cannot_be_stored_is_not_answered_200_and_its_retry_opens_the_ticket(
    database_url: str, start_service: StartService
) -> None:
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.start()).render_as_string(hide_password=False)
    try:
        desk = Desk(start_service(database_url=proxied, intake_channels=(CONNECT, HELP)))
        proxy.cut()
        desk.emulator.deliver_events_to(None)
        posted = desk.emulator.user_post(DAN, CONNECT, "Is anyone there?")
        [event] = [e for e in desk.emulator.events if e["event"].get("ts") == posted]
        sender = RequestSender(desk.url, SIGNING_SECRET)
        body = json.dumps(event).encode()
        first = asyncio.run(sender.post(body, "application/json"))
        assert first.status is not None and first.status >= 500, (first.status, first.body)
        proxy.restore()
        retried = asyncio.run(sender.post(body, "application/json", retry_num=1, retry_reason="http_error"))
        assert retried.status == 200
        desk.emulator.deliver_events_to(desk.url)
        desk.wait_thread_text(CONNECT, posted, "Ticket #1 opened")
        desk.idle()
        assert desk.ticket_count() == 1
        desk.service.stop()
    finally:
        proxy.stop()
