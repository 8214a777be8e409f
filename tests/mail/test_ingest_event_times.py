"""A ticket's times are those of the request, not of when a worker got to it.

The intake answers 250 once the raw mail is committed to the intake queue; the worker builds the
ticket later (seconds, or hours when workers were down, or an operator's `--retry` of a failed
item). "created" is where time to first response and time to resolution start from (and the SLA
targets to come), so it must be when the customer's mail arrived."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from mail.ingest import EmailIngest
from store import inbound
from store.db import Database
from store.models import Message, Ticket, TicketEvent
from tests.mail.test_ingest import SUPPORT, mail, make_desk, rows

ARRIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKER_BACK = ARRIVED + timedelta(hours=2)


def test_a_mail_queued_while_no_worker_ran_opens_its_ticket_at_its_arrival(
    db: Database, tmp_path: Path
) -> None:
    desk = make_desk(db, tmp_path)
    raw = mail()
    with freeze_time(ARRIVED):  # the SMTP intake commits it and answers 250
        assert inbound.accept(
            desk.db,
            "email",
            "email:" + hashlib.sha256(raw).hexdigest(),
            payload={"mail_from": "bob@customer.test", "rcpt_tos": [SUPPORT]},
            raw=raw,
        )
    with freeze_time(WORKER_BACK):  # a worker gets to it two hours later
        [work] = inbound.claim(desk.db, "w1")
        asyncio.run(EmailIngest(desk).handle(work, "w1"))
    [ticket] = rows(desk, Ticket)
    [message] = rows(desk, Message)
    [created] = rows(desk, TicketEvent, TicketEvent.kind == "created")
    assert ticket.created_at == ARRIVED
    assert created.created_at == ARRIVED
    assert message.created_at == ARRIVED
