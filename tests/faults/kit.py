"""Pieces the fault tests share: filling the outbox with a few hundred rows through real actions,
`servicedesk serve --role worker` as a subprocess, and the figures each test reports.

Counting is done in the emulator: every post carries the metadata of its outbox row and part, so a
duplicate is a (row, part) seen twice and a loss is a row that never reached `done`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, CAROL, CONNECT, HELP, TRIAGE
from store import actions
from store.context import Desk
from store.db import Database
from store.models import Outbox, OutboxState, Ticket
from tests.bot.delivery_kit import STAFF, open_email_ticket, open_slack_ticket, posts_by_row

WAIT_SECONDS = 120.0  # bounds a broken test; never an assertion about speed


@dataclass
class Figures:
    """What docs/delivery.md reports for each fault test."""

    test: str
    rows: int
    duplicates: int
    losses: int
    seconds: float
    note: str = ""

    def report(self) -> None:
        # Shown with `pytest -s tests/faults`; docs/delivery.md keeps the figures of a run.
        print(
            f"\nFIGURES {self.test}: rows={self.rows} duplicates={self.duplicates} losses={self.losses} "
            f"drain={self.seconds:.1f}s {self.note}".rstrip(),
            file=sys.stderr,
        )


def fill(desk: Desk, emulator: SlackEmulator, tickets: int, *, lines: int = 2, slack_every: int = 3) -> None:
    """`tickets` tickets: every `slack_every`-th from Slack (Connect or #it-help), the rest by email;
    each with `lines` thread lines and, for Slack ones, a staff reply into the customer's thread."""
    for n in range(tickets):
        if slack_every and n % slack_every == 0:
            channel, user = (CONNECT, "U0EXTDAN") if (n // slack_every) % 2 == 0 else (HELP, CAROL)
            ticket_id = open_slack_ticket(desk, emulator, f"Slack request {n}", channel=channel, user=user)
        else:
            ticket_id = open_email_ticket(desk, subject=f"Mail request {n}", body=f"Body of request {n}")
        with desk.db.transaction() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            for line in range(lines):
                actions.common.thread_line(session, ticket, f"line {line} of ticket {n}")  # type: ignore[attr-defined]
            if ticket.origin_channel:
                actions.add_staff_reply(
                    session,
                    desk.policy,
                    ticket,
                    author=STAFF,
                    body_markdown=f"Reply to request {n}",
                    slack_channel=None,
                    slack_ts=None,
                )


def states(db: Database) -> Counter[str]:
    with db.transaction() as session:
        found = session.execute(select(Outbox.state, func.count()).group_by(Outbox.state)).all()
    return Counter({state: count for state, count in found})


def wait_drained(
    db: Database, timeout: float = WAIT_SECONDS, *, alive: subprocess.Popen[bytes] | None = None
) -> float:
    """Seconds until no row is pending or claimed."""
    started = time.monotonic()
    while True:
        counted = states(db)
        if not counted[OutboxState.PENDING] and not counted[OutboxState.CLAIMED]:
            return time.monotonic() - started
        if alive is not None and alive.poll() is not None:
            raise AssertionError(
                f"the worker exited ({alive.returncode}) before the outbox drained: {counted}"
            )
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"outbox not drained: {counted}")
        time.sleep(0.1)


def duplicates_and_losses(db: Database, emulator: SlackEmulator) -> tuple[int, int]:
    """(posts seen more than once, deliveries lost) over the whole outbox.

    A duplicate is a (row, part) carried by two live messages. A loss is a row that did not end
    `done`, or a part the store recorded as posted that no message in Slack carries.
    """
    posted = posts_by_row(emulator)
    duplicates = sum(count - 1 for count in posted.values() if count > 1)
    losses = 0
    with db.transaction() as session:
        for row in session.scalars(select(Outbox)):
            if row.state != OutboxState.DONE:
                losses += 1
                continue
            parts = [int(key[3:]) for key in (row.result or {}) if key.startswith("ts:")]
            losses += sum(1 for part in parts if not posted.get((row.id, part)))
    return duplicates, losses


# ----- the worker as a separate process -----


def servicedesk_command() -> list[str]:
    script = Path(sys.executable).parent / "servicedesk"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def worker_env(database_url: str, emulator: SlackEmulator, files_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR")}
    return {
        **keep,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_DATABASE_URL": database_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_FILES_DIR": str(files_dir),
        "SERVICEDESK_SUPPORT_ADDRESS": "support@acme.example",
        "SERVICEDESK_REPLY_DELAY_SECONDS": "0",
        # The emulator enforces no rate limits here; the gate would only slow the test down.
        "SERVICEDESK_SLACK_PACING": "false",
    }


class WorkerProcess:
    """One `servicedesk serve --role worker`, its output kept in a file for the test to read."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*servicedesk_command(), "serve", "--role", "worker"],
            env=env,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """kill -9, then reap it (a zombie would still look alive to the next worker)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def wait_started(self) -> None:
        """Until the worker runs: a SIGTERM before `serve` sets its handlers ends it by default."""
        deadline = time.monotonic() + WAIT_SECONDS
        while " started" not in self.output() and self.process.poll() is None:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)

    def terminate(self, timeout: float = 15.0) -> int:
        self.wait_started()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
