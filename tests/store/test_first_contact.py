"""First contact: one address makes one customer (and one organization), also when two
transactions meet the same new address at once (two mails, or a mail and `/desk new`)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from store import actions
from store.db import Database
from store.models import Customer, Organization

ADDRESS = "dan@globex.example"


def _waiting_on_a_lock(db: Database) -> bool:
    """PostgreSQL: another session of this database waits on a row lock (the unique index)."""
    with db.transaction() as session:
        query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return bool(session.execute(query).scalar_one())


def test_two_first_contacts_at_once_make_one_customer(db: Database) -> None:
    found: list[tuple[int, int | None]] = []
    errors: list[BaseException] = []

    def second_contact() -> None:
        try:
            with db.transaction() as session:
                customer = actions.customer_for_email(session, ADDRESS, "Dan")
                found.append((customer.id, customer.organization_id))
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)

    second = threading.Thread(target=second_contact)
    with db.transaction() as session:
        first = actions.customer_for_email(session, ADDRESS, "Dan")
        first_ids = (first.id, first.organization_id)
        # Our insert is not committed: the second transaction must meet it.
        second.start()
        if db.is_postgresql:
            # Its read found nobody, so it inserts too and waits on our unique-index entry; when we
            # commit, its insert fails and it must fall back to the row we made.
            for _ in range(500):
                if _waiting_on_a_lock(db):
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the second transaction never waited on the first one's insert")
        # On SQLite the second transaction waits for the write lock before it reads anything.
    second.join(timeout=30)

    assert errors == []
    assert found == [first_ids]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 1
        assert session.scalar(select(func.count()).select_from(Organization)) == 1
