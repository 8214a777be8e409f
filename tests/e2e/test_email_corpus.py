"""Every message of the shared corpus, sent through SMTP into the running service, answered as
`corpus/raw/EXPECT.tsv` says: 250 (no crash, no dropped connection, no 451), and a ticket with its card
and thread post for a request; no ticket, no card and no acknowledgement for auto-replies and bounces.

Each message arrives alone at an empty desk (a fresh service and database per message): several
corpus messages share one Message-ID, which a shared desk would rightly store only once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from store.models import InboundItem, Message, Outbox, Ticket
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "raw"
EXPECT = CORPUS / "EXPECT.tsv"


def expectations() -> list[tuple[str, str, str]]:
    if not EXPECT.is_file():
        return []
    lines = EXPECT.read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split("\t", 2)) for line in lines if line.strip()]  # type: ignore[misc]


pytestmark = pytest.mark.skipif(not EXPECT.is_file(), reason=f"no corpus at {CORPUS}")


@pytest.mark.parametrize(("name", "kind", "what"), expectations(), ids=[e[0] for e in expectations()])
def test_corpus_message(start_service: StartService, name: str, kind: str, what: str) -> None:
    raw = (CORPUS / name).read_bytes()
    service = start_service()

    code, text = service.send_mail(raw, mail_from="sender@corpus.test", rcpt_tos=(SUPPORT,))

    assert code == 250, f"{name}: {code} {text!r}"
    states = service.wait_for(lambda: _settled(service), f"{name} to be handled")
    assert states == ["done"], f"{name}: intake item {states}"
    with service.db.transaction() as session:
        tickets = session.scalars(select(Ticket)).all()
        acknowledgements = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all()
        messages = session.scalars(select(Message)).all()
        bodies = [m.body_markdown for m in messages]
    if kind == "request":
        assert len(tickets) == 1, f"{name} ({what}) opened {len(tickets)} tickets"
        assert bodies and all(body.strip() for body in bodies), f"{name}: empty body ({what})"
        card = service.wait_for(service.card, f"the card of {name}")
        service.wait_for(lambda: service.thread(card.ts), f"the thread post of {name}")
    else:
        assert tickets == [], f"{name} ({what}) opened a ticket"
        assert acknowledgements == [], f"{name} ({what}) was answered"
        assert service.cards() == []


def _settled(service: RunningDesk) -> list[str] | None:
    with service.db.transaction() as session:
        states = list(session.scalars(select(InboundItem.state)))
    return states if states and all(state in ("done", "failed") for state in states) else None
