"""`servicedesk outbox` and `--retry ID` through the CLI, and /healthz's view of delivery."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from bot.cli import main
from bot.http import build_web_app
from store import actions, inbound, outbox
from store.actions import DESK, DeskPolicy
from store.db import Database
from store.migrate import upgrade
from store.models import InboundItem, Origin, Outbox, OutboxState, utcnow
from store.service_state import set_slack_paused

POLICY = DeskPolicy(triage_channel="C0TRIAGE")


def open_ticket(db: Database) -> None:
    with db.transaction() as session:
        customer = actions.customer_for_email(session, "dan@globex.example", "Dan")
        ticket = actions.open_ticket(
            session, POLICY, subject="Printer", requester=customer, origin=Origin.EMAIL, actor=DESK
        )
        actions.add_customer_message(
            session, POLICY, ticket, customer=customer, body_markdown="It burns", source="email"
        )


def fail_first_row(db: Database, error: str) -> int:
    (item,) = outbox.claim_due(db, "w", limit=1)
    with db.transaction() as session:
        assert outbox.mark_failed(session, item.id, "w", error)
    return item.id


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", database_url)


def test_outbox_lists_failed_rows_first_then_pending(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    open_ticket(db)
    failed = fail_first_row(db, "the app is not a member of the channel (invite it there)")
    assert main(["outbox"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Outbox: 1 pending, 0 claimed, 1 failed"
    assert lines[1].split() == ["ID", "KIND", "TICKET", "STATE", "TRIES", "NEXT", "ATTEMPT", "LAST", "ERROR"]
    assert lines[2].split()[:5] == [str(failed), "slack.card", "#1", "failed", "1"]
    assert "not a member of the channel" in lines[2]
    assert lines[3].split()[:6] == [str(failed + 1), "slack.thread_post", "#1", "pending", "0", "due"]
    assert lines[-1] == "Retry a failed row with: servicedesk outbox --retry ID"


def test_retry_puts_a_failed_row_back_due_now(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    open_ticket(db)
    failed = fail_first_row(db, "channel_not_found")
    assert main(["outbox", "--retry", str(failed)]) == 0
    assert f"Row {failed} will be delivered again now" in capsys.readouterr().out
    (item,) = outbox.claim_due(db, "w2", limit=1)
    assert item.id == failed and item.attempts == 2  # counted: a retry looks before it posts again


def test_retry_of_a_row_that_did_not_fail_is_refused(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    open_ticket(db)
    assert main(["outbox", "--retry", "2"]) == 1  # pending, not failed
    assert main(["outbox", "--retry", "999"]) == 1
    assert capsys.readouterr().err.count("is not a failed delivery") == 2


def test_a_refused_retry_says_what_the_row_is_instead(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator retrying the wrong ID learns whether it went out, was cancelled, is still being
    tried, or does not exist, instead of one answer for all four."""
    open_ticket(db)  # rows 1 (card) and 2 (thread post), pending
    with db.transaction() as session:
        session.execute(update(Outbox).where(Outbox.id == 1).values(state=OutboxState.DONE))
        session.execute(update(Outbox).where(Outbox.id == 2).values(state=OutboxState.CANCELLED))
    open_ticket(db)  # row 3 onwards, pending
    said = {}
    for row in ("1", "2", "3", "999"):
        assert main(["outbox", "--retry", row]) == 1
        [said[row]] = capsys.readouterr().err.splitlines()
    not_failed = "servicedesk: row {} is not a failed delivery: {}; nothing to retry"
    assert said["1"] == not_failed.format(1, "it was delivered already")
    assert said["2"] == (
        "servicedesk: row 2 is not a failed delivery: it was cancelled (a reply deleted or made a note "
        "before it went out); nothing to retry"
    )
    assert said["3"] == (
        "servicedesk: row 3 is not a failed delivery: it is pending, and the worker tries it by itself; "
        "nothing to retry"
    )
    assert said["999"] == not_failed.format(999, "there is no such row")


def park_failed_mail(db: Database) -> int:
    """A mail accepted at SMTP that the worker could not turn into a ticket, attempt after attempt."""
    inbound.accept(db, "email", "email:broken@x", payload={"mail_from": "bob@customer.test"}, raw=b"x")
    with db.transaction() as session:
        session.execute(update(InboundItem).values(attempts=inbound.MAX_ATTEMPTS - 1))
    [work] = inbound.claim(db, "w")
    assert inbound.give_up_or_retry(db, work.id, "w", "DataError: the database refused it") == "failed"
    return work.id


def test_failed_intake_is_listed_and_tried_again_with_retry_intake(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    item_id = park_failed_mail(db)
    assert main(["outbox"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Intake: 1 failed (accepted, but not turned into tickets)")
    assert lines[start + 1].split() == ["ID", "KIND", "RECEIVED", "TRIES", "LAST", "ERROR"]
    assert lines[start + 2].split()[:2] == [str(item_id), "email"]
    assert "DataError: the database refused it" in lines[start + 2]
    assert lines[-1] == "Try one again with: servicedesk outbox --retry-intake ID"

    assert main(["outbox", "--retry-intake", str(item_id)]) == 0
    assert f"Intake item {item_id} will be tried again now" in capsys.readouterr().out
    assert [work.id for work in inbound.claim(db, "w2")] == [item_id]
    assert main(["outbox", "--retry-intake", str(item_id)]) == 1  # claimed again, not failed
    assert capsys.readouterr().err == (
        f"servicedesk: intake item {item_id} is not a failed one: a worker is trying it now; "
        "nothing to retry\n"
    )
    assert main(["outbox", "--retry-intake", "99"]) == 1
    assert "intake item 99 is not a failed one: there is no such item" in capsys.readouterr().err


def test_intake_still_being_retried_is_listed_not_called_nothing(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mail accepted at SMTP whose ticket could not be built yet (retrying with backoff) and one
    not yet picked up: the outbox is empty, yet the listing must not say nothing is waiting."""
    inbound.accept(db, "email", "email:retrying@x", payload={"mail_from": "bob@customer.test"}, raw=b"x")
    [work] = inbound.claim(db, "w")
    assert inbound.give_up_or_retry(db, work.id, "w", "OperationalError: database is locked") == "pending"
    inbound.accept(db, "email", "email:queued@x", payload={"mail_from": "eve@customer.test"}, raw=b"y")
    assert main(["outbox"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "Nothing is waiting or failed." not in out
    start = lines.index("Intake: 2 waiting to become tickets (1 retrying after an error), 0 failed")
    assert lines[start + 1].split() == ["ID", "KIND", "RECEIVED", "TRIES", "NEXT", "ATTEMPT", "LAST", "ERROR"]
    row = lines[start + 2]
    assert row.split()[:2] == [str(work.id), "email"] and " 1 " in row and " in " in row
    assert row.endswith("OperationalError: database is locked")
    assert len(lines) == start + 3  # the mail not tried yet is counted, not listed


def test_an_empty_outbox_says_so(db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox"]) == 0
    assert "Nothing is waiting or failed." in capsys.readouterr().out


def test_an_id_past_the_database_integers_is_not_a_failed_delivery(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    open_ticket(db)
    assert main(["outbox", "--retry", "99999999999999999999"]) == 1
    assert "row 99999999999999999999 is not a failed delivery" in capsys.readouterr().err


def test_a_huge_limit_lists_everything_and_no_limit_is_refused(
    db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    open_ticket(db)
    assert main(["outbox", "--limit", "99999999999999999999"]) == 0
    assert capsys.readouterr().out.startswith("Outbox: 2 pending")
    assert main(["outbox", "--limit", "0"]) == 2
    assert capsys.readouterr().err == "servicedesk: --limit: expected a positive whole number (got 0)\n"


def test_a_database_never_migrated_is_told_to_run_db_upgrade_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.db"
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", f"sqlite:///{path}")
    for argv in (["outbox"], ["outbox", "--retry", "1"]):
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            f"servicedesk: the database file {path} does not exist: run `servicedesk db upgrade`\n"
        )
    assert not path.exists()
    path.touch()  # a file, but no schema in it
    assert main(["outbox"]) == 2
    assert (
        capsys.readouterr().err
        == "servicedesk: the database has no schema yet: run `servicedesk db upgrade`\n"
    )


def test_a_database_behind_this_release_is_told_to_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    upgrade(old, "0001")
    old.dispose()
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", url)
    assert main(["outbox"]) == 2
    assert "the database schema is older than this release: run `servicedesk db upgrade`" in (
        capsys.readouterr().err
    )


def test_healthz_reports_the_oldest_due_row_a_slack_pause_and_failed_intake(db: Database) -> None:
    open_ticket(db)
    park_failed_mail(db)
    with db.transaction() as session:
        session.execute(
            update(Outbox)
            .where(Outbox.state == OutboxState.PENDING)
            .values(next_attempt_at=utcnow() - timedelta(minutes=5))
        )
    set_slack_paused(db, "Slack rejected the bot token (token_revoked)")

    async def probe() -> dict[str, object]:
        async with TestClient(TestServer(build_web_app(db, None))) as client:
            answer = await client.get("/healthz")
            assert answer.status == 200
            return dict(await answer.json())

    body = asyncio.run(probe())
    assert body["slack_delivery"] == "paused: Slack rejected the bot token (token_revoked)"
    age = body["oldest_due_delivery_seconds"]
    assert isinstance(age, float) and age >= 300
    assert body["failed_intake"] == 1
