"""Ticket numbers are sequential and never reused, also with concurrent writers."""

from __future__ import annotations

import threading

from store import actions
from store.actions import Actor, DeskPolicy
from store.db import Database
from store.keys import random_key
from store.models import Origin

POLICY = DeskPolicy(mail_domain="example.com", triage_channel="C0TRIAGE")


def _open(db: Database, count: int, numbers: list[int], errors: list[BaseException]) -> None:
    try:
        for i in range(count):
            with db.transaction() as session:
                customer = actions.customer_for_email(session, f"c{threading.get_ident()}-{i}@example.org")
                ticket = actions.open_ticket(
                    session, POLICY, subject="s", requester=customer, origin=Origin.EMAIL, actor=Actor("t")
                )
                numbers.append(ticket.number)
    except BaseException as exc:  # collected and re-raised by the test
        errors.append(exc)


def test_parallel_writers_get_unique_consecutive_numbers(database_url):
    db = Database(database_url)
    numbers: list[int] = []
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_open, args=(db, 15, numbers, errors)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    assert errors == []
    assert sorted(numbers) == list(range(1, 91))


def test_a_rolled_back_ticket_does_not_burn_a_number_twice(db):
    class Boom(Exception):
        pass

    try:
        with db.transaction() as session:
            customer = actions.customer_for_email(session, "x@example.org")
            actions.open_ticket(
                session, POLICY, subject="s", requester=customer, origin=Origin.EMAIL, actor=Actor("t")
            )
            raise Boom
    except Boom:
        pass
    with db.transaction() as session:
        customer = actions.customer_for_email(session, "x@example.org")
        ticket = actions.open_ticket(
            session, POLICY, subject="s", requester=customer, origin=Origin.EMAIL, actor=Actor("t")
        )
        assert ticket.number == 1


def test_reply_keys_are_random_and_long():
    keys = {random_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(k) >= 26 and k.isalnum() and k == k.lower() for k in keys)
