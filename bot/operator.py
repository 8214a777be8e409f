"""`servicedesk outbox`: what is waiting to be delivered or has failed, and retrying a failed row;
with them, intake (mail, Slack events) accepted but never turned into tickets, and trying it again.

Exit codes: 0 done; 1 the row or item cannot be retried (unknown, or not failed); 2 a bad `--limit`. A
database that cannot be reached, or is not at this release's schema, is one line from the CLI
(StoreError), as for every command; neither command creates a database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TextIO

from store import inbound, outbox
from store.db import Database
from store.migrate import open_migrated
from store.models import utcnow
from store.service_state import slack_paused
from store.settings import Settings

EXIT_CANNOT_RETRY = 1
EXIT_USAGE = 2
ERROR_WIDTH = 70
COLUMNS = ("ID", "KIND", "TICKET", "STATE", "TRIES", "NEXT ATTEMPT", "LAST ERROR")
INTAKE_COLUMNS = ("ID", "KIND", "RECEIVED", "TRIES", "LAST ERROR")
RETRYING_COLUMNS = ("ID", "KIND", "RECEIVED", "TRIES", "NEXT ATTEMPT", "LAST ERROR")


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "due now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    return f"in {seconds}s"


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _error(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def format_rows(rows: list[outbox.OutboxRow], now: datetime) -> list[str]:
    table = [COLUMNS] + [
        (
            str(row.id),
            row.kind,
            f"#{row.ticket_number}" if row.ticket_number is not None else "-",
            row.state,
            str(row.attempts),
            "-" if row.state == "failed" else _when(row.next_attempt_at, now),
            _error(row.last_error),
        )
        for row in rows
    ]
    return _columns(table)


def _columns(table: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def list_outbox(settings: Settings, limit: int = 50, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if limit < 1:
        print(f"servicedesk: --limit: expected a positive whole number (got {limit})", file=sys.stderr)
        return EXIT_USAGE
    db = open_migrated(settings.database_url)
    try:
        rows, counts = outbox.undelivered(db, limit=limit)
        intake = inbound.backlog(db, limit)
        failed_intake = inbound.failed_count(db)
        # "Nothing is waiting" only when the intake has nothing either: mail accepted at SMTP whose
        # ticket keeps failing to be built is waiting too, before any outbox row exists for it.
        idle = not intake.waiting and not failed_intake
        _list_deliveries(rows, counts, slack_paused(db), out, idle=idle)
        _list_triage_waiting(db, out)
        _list_intake_backlog(intake, failed_intake, out)
        _list_failed_intake(db, limit, out)
    finally:
        db.dispose()
    return 0


def _list_deliveries(
    rows: list[outbox.OutboxRow], counts: dict[str, int], paused: str | None, out: TextIO, *, idle: bool
) -> None:
    summary = ", ".join(f"{counts.get(state, 0)} {state}" for state in ("pending", "claimed", "failed"))
    print(f"Outbox: {summary}", file=out)
    if paused is not None:
        # Paused, the Slack rows show "due now" and do not move: without the reason an operator
        # takes it for a stuck worker.
        print(
            f"Slack delivery is paused: {paused}. Slack rows wait until the token works again "
            "(the worker checks it by itself); email keeps flowing.",
            file=out,
        )
    if not rows:
        if idle:
            print("Nothing is waiting or failed.", file=out)
        return
    for line in format_rows(rows, utcnow()):
        print(line, file=out)
    if sum(counts.values()) > len(rows):
        print(f"(first {len(rows)} shown; --limit N for more)", file=out)
    if counts.get("failed"):
        print("Retry a failed row with: servicedesk outbox --retry ID", file=out)


def _list_triage_waiting(db: Database, out: TextIO) -> None:
    """Pending rows the triage channel refuses as a channel look like any retry in the listing (and
    may be past its --limit): said plainly, since new tickets among them are invisible to staff."""
    waiting = outbox.waiting_for_triage(db)
    if not waiting.total:
        return
    print(f"Waiting for the triage channel: {waiting.said()}", file=out)
    print(
        "Unarchive the channel, invite the app to it, or fix SERVICEDESK_TRIAGE_CHANNEL "
        "(servicedesk check says which); they then go up by themselves.",
        file=out,
    )


def _list_intake_backlog(intake: inbound.IntakeBacklog, failed: int, out: TextIO) -> None:
    """Intake accepted and not yet a ticket: counted, and the items retrying after an error listed
    with their next attempt and error (the rest are simply queued for the worker)."""
    if not intake.waiting:
        return
    print(
        f"Intake: {intake.waiting} waiting to become tickets "
        f"({intake.retrying_total} retrying after an error), {failed} failed",
        file=out,
    )
    if not intake.retrying:
        return
    now = utcnow()
    table = [RETRYING_COLUMNS] + [
        (
            str(item.id),
            item.kind,
            _ago(item.received_at, now),
            str(item.attempts),
            "running now" if item.state == "claimed" else _when(item.not_before or now, now),
            _error(item.last_error),
        )
        for item in intake.retrying
    ]
    for line in _columns(table):
        print(line, file=out)
    if intake.retrying_total > len(intake.retrying):
        print(f"(first {len(intake.retrying)} shown; --limit N for more)", file=out)


def _list_failed_intake(db: Database, limit: int, out: TextIO) -> None:
    """Input accepted (SMTP 250, Slack 200) that could not be turned into a ticket: kept, shown."""
    items, total = inbound.failed_items(db, limit)
    if not total:
        return
    print(f"Intake: {total} failed (accepted, but not turned into tickets)", file=out)
    now = utcnow()
    table = [INTAKE_COLUMNS] + [
        (
            str(item.id),
            item.kind,
            _ago(item.received_at, now),
            str(item.attempts),
            _error(item.last_error),
        )
        for item in items
    ]
    for line in _columns(table):
        print(line, file=out)
    if total > len(items):
        print(f"(first {len(items)} shown; --limit N for more)", file=out)
    print("Try one again with: servicedesk outbox --retry-intake ID", file=out)


# Why a row or item that is not failed needs no retry, by its state: one answer for all of them left an
# operator guessing whether the ID was wrong or the delivery had gone out.
_NOT_FAILED: dict[str | None, str] = {
    None: "there is no such row",
    "done": "it was delivered already",
    "cancelled": "it was cancelled (a reply deleted or made a note before it went out)",
    "pending": "it is pending, and the worker tries it by itself",
    "claimed": "a worker is trying it now",
}
_INTAKE_NOT_FAILED: dict[str | None, str] = {
    None: "there is no such item",
    "done": "it was turned into a ticket already",
    "pending": "it is waiting, and the worker tries it by itself",
    "claimed": "a worker is trying it now",
}


def retry_intake(settings: Settings, item_id: int, *, out: TextIO | None = None) -> int:
    return _retry(
        settings,
        inbound.retry_failed_item,
        inbound.item_state,
        item_id,
        refused=f"intake item {item_id} is not a failed one",
        reasons=_INTAKE_NOT_FAILED,
        done=f"Intake item {item_id} will be tried again now",
        out=out,
    )


def retry_outbox(settings: Settings, row_id: int, *, out: TextIO | None = None) -> int:
    return _retry(
        settings,
        outbox.retry_failed,
        outbox.row_state,
        row_id,
        refused=f"row {row_id} is not a failed delivery",
        reasons=_NOT_FAILED,
        done=f"Row {row_id} will be delivered again now",
        out=out,
    )


def _retry(
    settings: Settings,
    retry: Callable[[Database, int], bool],
    state_of: Callable[[Database, int], str | None],
    number: int,
    *,
    refused: str,
    reasons: dict[str | None, str],
    done: str,
    out: TextIO | None,
) -> int:
    out = out or sys.stdout
    db = open_migrated(settings.database_url)
    try:
        retried = retry(db, number)
        state = None if retried else state_of(db, number)
    finally:
        db.dispose()
    if not retried:
        reason = reasons.get(state, f"it is {state}")
        print(f"servicedesk: {refused}: {reason}; nothing to retry", file=sys.stderr)
        return EXIT_CANNOT_RETRY
    print(f"{done} (a running worker picks it up).", file=out)
    return 0
