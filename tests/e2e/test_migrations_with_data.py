"""`servicedesk db downgrade` / `db upgrade` with real data in the database.

A ticket opened by mail (with an attachment and a staff reply) fills messages, attachments, email ids,
outbox and events; then each migration is undone one step at a time through the CLI, and redone, and
no row may be lost on the way (DESIGN.md, Store: "every migration runs forward and back on SQLite
(`render_as_batch`) and PostgreSQL")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from sandbox.workspace import ALICE
from tests.e2e.conftest import StartService
from tests.e2e.test_email_flow import PNG, customer_mail

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("tickets", "messages", "attachments", "email_ids", "participants", "ticket_events", "outbox")


def cli(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "SERVICEDESK_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def counts(service) -> dict[str, int]:
    with service.db.engine.connect() as connection:
        return {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_each_migration_goes_back_and_forward_with_tickets_in_the_database(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start_service()
    raw, _ = customer_mail("The printer is on fire.", attachment=("photo.png", PNG, "image/png"))
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(service.card, "the card")
    service.post_as(ALICE, "We are on it.", thread_ts=card.ts)
    service.wait_for_mails(2)  # the acknowledgement and the reply
    service.stop()
    before = counts(service)
    assert before["messages"] >= 2 and before["attachments"] >= 1
    service.db.dispose()
    url = service.settings.database_url
    for revision in ("0004", "0003", "0002", "0001"):
        result = cli("db", "downgrade", revision, database_url=url, cwd=tmp_path)
        assert result.returncode == 0, f"downgrade to {revision}: {result.stderr[-2000:]}"
        assert counts(service) == before, f"rows lost going down to {revision}"
        service.db.dispose()
    result = cli("db", "upgrade", database_url=url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert counts(service) == before
    service.db.dispose()
    assert cli("db", "downgrade", "base", database_url=url, cwd=tmp_path).returncode == 0
    assert cli("db", "upgrade", database_url=url, cwd=tmp_path).returncode == 0
    assert counts(service)["tickets"] == 0
