"""RFC 3834 Auto-Submitted values with comments, through SMTP into the running service.

RFC 3834 section 5 lets the field carry comments (`auto-submitted-field = "Auto-Submitted:" [CFWS]
auto-submitted-value [CFWS]`), and `no` means "a person sent this": such a mail is a request, must open
its ticket and gets its acknowledgement (DESIGN "Email in" 3: only `Auto-Submitted` *other than* `no`
marks automatic mail). A comment after an automatic value still marks it automatic.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from store.models import InboundItem, Outbox, Ticket
from tests.e2e.conftest import SUPPORT, RunningDesk


def request(value: str, sender: str) -> bytes:
    return (
        f"From: Bob <{sender}>\r\nTo: {SUPPORT}\r\nSubject: Printer on fire\r\n"
        f"Message-ID: <{sender}.as@customer.test>\r\nAuto-Submitted: {value}\r\n\r\nPlease help.\r\n"
    ).encode()


def settled(service: RunningDesk) -> None:
    def done() -> bool:
        with service.db.transaction() as session:
            states = list(session.scalars(select(InboundItem.state)))
        return bool(states) and all(state in ("done", "failed") for state in states)

    service.wait_for(done, "the intake queue to drain")


@pytest.mark.parametrize(
    "value", ["no (sent by a person)", "no(typed by hand)", "(manual) no", "No ; comment-ish=1"]
)
def test_auto_submitted_no_with_a_comment_is_a_person_and_opens_a_ticket(
    service: RunningDesk, value: str
) -> None:
    assert service.send_mail(request(value, "bob@customer.test"))[0] == 250
    settled(service)
    with service.db.transaction() as session:
        tickets = session.scalars(select(Ticket)).all()
        acks = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all()
    assert len(tickets) == 1, f"Auto-Submitted: {value} was taken for an auto-reply: no ticket"
    assert len(acks) == 1


@pytest.mark.parametrize("value", ["auto-replied (vacation)", "(robot) auto-generated"])
def test_auto_submitted_automatic_with_a_comment_opens_nothing(service: RunningDesk, value: str) -> None:
    assert service.send_mail(request(value, "ooo@customer.test"))[0] == 250
    settled(service)
    with service.db.transaction() as session:
        assert session.scalars(select(Ticket)).all() == []
        assert session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all() == []


@pytest.mark.parametrize("value", ["bulk (newsletter)", "(mass mail) junk", "list (digest)"])
def test_bulk_precedence_with_a_comment_opens_nothing(service: RunningDesk, value: str) -> None:
    raw = (
        f"From: News <news@customer.test>\r\nTo: {SUPPORT}\r\nSubject: Our offers\r\n"
        f"Message-ID: <prec@customer.test>\r\nPrecedence: {value}\r\n\r\nBuy now.\r\n"
    ).encode()
    assert service.send_mail(raw, mail_from="news@customer.test")[0] == 250
    settled(service)
    with service.db.transaction() as session:
        assert session.scalars(select(Ticket)).all() == [], f"Precedence: {value} opened a ticket"
        assert session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all() == []
