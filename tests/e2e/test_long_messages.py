"""A customer's very long email, end to end: SMTP into the intake, the ticket's triage thread in the
Slack emulator. Slack refuses a section over 3,000 characters, a message over 50 blocks and a text
over 40,000 characters: the desk splits the message into as many posts as it takes, never refuses
it, and loses nothing (every line the customer wrote shows in the thread, in order)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from store.models import Outbox, OutboxState
from tests.e2e.conftest import TRIAGE, RunningDesk, message_text
from tests.e2e.test_email_flow import customer_mail

pytestmark = pytest.mark.timeout(180)


def _settled(service: RunningDesk) -> None:
    def done() -> bool:
        with service.db.transaction() as session:
            rows = session.execute(select(Outbox.kind, Outbox.state, Outbox.last_error)).all()
        failed = [row for row in rows if row.state == OutboxState.FAILED]
        assert not failed, f"Slack refused a post: {failed}"
        return bool(rows) and all(row.state in (OutboxState.DONE, OutboxState.CANCELLED) for row in rows)

    service.wait_for(done, "every delivery done", timeout=120)


@pytest.mark.parametrize(
    "shape",
    ["thousands_of_lines", "one_paragraph", "code_block"],
)
def test_a_huge_email_reaches_the_thread_whole(service: RunningDesk, shape: str) -> None:
    if shape == "thousands_of_lines":
        markers = [f"line-{n:05d}" for n in range(5000)]
        body = "\n".join(f"{m} the printer said something" for m in markers)
    elif shape == "one_paragraph":
        markers = [f"word{n:05d}" for n in range(6000)]
        body = " ".join(markers)  # about 60,000 characters and no line break
    else:
        markers = [f"trace-{n:04d}" for n in range(1500)]
        body = "Stack trace:\n\n" + "\n".join(f"    at {m} (Frame.java:{n})" for n, m in enumerate(markers))
    assert len(body) > 40_000
    raw, _ = customer_mail(body, subject="A long one")
    code, _ = service.send_mail(raw)
    assert code == 250
    card = service.wait_for(lambda: service.card(1), "the card")
    _settled(service)
    # What the reader sees: the blocks (the `text` is only the notification fallback).
    shown = "\n".join(message_text(replace(m, text="")) for m in service.thread(card.ts) if m.blocks)
    positions = [shown.find(m) for m in markers]
    missing = [m for m, at in zip(markers, positions, strict=True) if at < 0]
    assert missing == [], f"{len(missing)} of {len(markers)} pieces lost, first {missing[:3]}"
    assert positions == sorted(positions), "the pieces are out of order"
    assert len(service.cards()) == 1
    assert len([m for m in service.emulator.messages(TRIAGE) if not m.thread_ts or m.thread_ts == m.ts]) == 1
