"""A staff reply's receipt marks (pending, then delivered or failed) end as the last one written,
whatever happened to an earlier one's call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.delivery import SlackDelivery
from mail.delivery import EmailDelivery
from sandbox.faults import Fault
from sandbox.mail_sink import MailSink
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, TRIAGE
from store.context import Desk
from store.outbox import Kind
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    client_for,
    desk_for,
    emulator_fixture,
    open_email_ticket,
    run_until_drained,
    staff_reply,
    worker_for,
)
from tests.bot.test_delivery_slack import ticket


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture
def desk(database_url: str, emulator: SlackEmulator, tmp_path: Path, sink: MailSink) -> Desk:
    return desk_for(database_url, emulator, tmp_path / "files", smtp_relay_url=sink.url)


def deliver_all(desk: Desk, emulator: SlackEmulator) -> None:
    performers = SlackDelivery(desk, client_for(emulator)).performers()
    performers[Kind.EMAIL.value] = EmailDelivery(desk).perform
    run_until_drained(worker_for(desk, performers), desk.db)


@pytest.mark.parametrize("fault", [Fault.reset_after_effect(), Fault.server_error(503)], ids=["reset", "503"])
def test_a_pending_mark_retried_never_lands_after_delivered(
    desk: Desk, emulator: SlackEmulator, sink: MailSink, fault: Fault
) -> None:
    ticket_id = open_email_ticket(desk)
    deliver_all(desk, emulator)
    staff_ts = emulator.user_post(
        ALICE, TRIAGE, "Here is the fix", thread_ts=str(ticket(desk, ticket_id).triage_ts)
    )
    emulator.add_fault("reactions.add", fault)  # the hourglass's call: its outcome unknown, or failed
    staff_reply(desk, ticket_id, "Here is the fix", slack_ts=staff_ts)
    deliver_all(desk, emulator)

    [reply] = sink.wait_for(1)
    assert reply.rcpt_tos == ["dan@globex.example"]
    message = emulator.message(TRIAGE, staff_ts)
    assert message is not None and "white_check_mark" in message.reactions
    assert "hourglass_flowing_sand" not in message.reactions
