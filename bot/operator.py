"""`servicedesk outbox`: what is waiting to be delivered or has failed, and retrying a failed row.

Exit codes: 0 done; 1 the row cannot be retried (unknown, or not failed); 2 a bad `--limit`. A
database that cannot be reached, or is not at this release's schema, is one line from the CLI
(StoreError), as for every command; neither command creates a database.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

from store import outbox
from store.migrate import open_migrated
from store.models import utcnow
from store.settings import Settings

EXIT_CANNOT_RETRY = 1
EXIT_USAGE = 2
ERROR_WIDTH = 70
COLUMNS = ("ID", "KIND", "TICKET", "STATE", "TRIES", "NEXT ATTEMPT", "LAST ERROR")


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
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
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
    finally:
        db.dispose()
    summary = ", ".join(f"{counts.get(state, 0)} {state}" for state in ("pending", "claimed", "failed"))
    print(f"Outbox: {summary}", file=out)
    if not rows:
        print("Nothing is waiting or failed.", file=out)
        return 0
    for line in format_rows(rows, utcnow()):
        print(line, file=out)
    if sum(counts.values()) > len(rows):
        print(f"(first {len(rows)} shown; --limit N for more)", file=out)
    if counts.get("failed"):
        print("Retry a failed row with: servicedesk outbox --retry ID", file=out)
    return 0


def retry_outbox(settings: Settings, row_id: int, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    db = open_migrated(settings.database_url)
    try:
        retried = outbox.retry_failed(db, row_id)
    finally:
        db.dispose()
    if not retried:
        print(f"servicedesk: row {row_id} is not a failed delivery; nothing to retry", file=sys.stderr)
        return EXIT_CANNOT_RETRY
    print(f"Row {row_id} will be delivered again now (a running worker picks it up).", file=out)
    return 0
