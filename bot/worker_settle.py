"""Settling a delivery attempt's outcome in the store: one transaction per row.

Done marks the row and applies what the delivery produced (a ts, a receipt); Retry puts it back
with backoff, or fails it past its deadline; Fail fails it now. A failure is told in the ticket's
thread (unless it was the triage thread itself that could not be reached) and on the reply's
receipt. Pause is handled by the worker (it concerns every Slack row, not this one) and only the
row's own part is here.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.blocks.messages import delivery_failed, slack_delivery_failed
from bot.delivery.attempt import POSTED_DIGEST
from bot.outcomes import Done, Fail, Outcome, Retry
from bot.text import escape_mrkdwn
from store import outbox
from store.actions.common import thread_line
from store.actions.messages import follow_late_copy, lock_message, settle_delivery
from store.db import Database
from store.models import Ticket
from store.outbox import Kind, OutboxItem

log = logging.getLogger(__name__)

# A card or a line that could not be posted into the triage thread cannot be told there. (A
# message's copy Slack refused can, once the thread exists.)
UNTOLD_KINDS = frozenset({Kind.CARD, Kind.THREAD_LINE})
RECEIPT_KINDS = frozenset({Kind.EMAIL, Kind.ORIGIN_POST})
ORIGIN_KINDS = frozenset({Kind.ORIGIN_POST, Kind.ORIGIN_LINE, Kind.ORIGIN_ACK})
NOT_SHOWN = ":warning: A message of this ticket could not be shown here: {error}. The ticket keeps it."


def describe(item: OutboxItem) -> str:
    """How logs name a row: its id, kind and ticket number (what an operator searches for)."""
    ticket = f" ticket #{item.ticket_number}" if item.ticket_number is not None else ""
    return f"row {item.id} ({item.kind}{ticket}, attempt {item.attempts})"


def log_fields(item: OutboxItem, **more: Any) -> dict[str, Any]:
    return {
        "row_id": item.id,
        "kind": item.kind,
        "ticket_number": item.ticket_number,
        "attempt": item.attempts,
        **more,
    }


def settle(db: Database, worker_id: str, item: OutboxItem, outcome: Outcome) -> str:
    """Record the outcome; returns what became of the row, for the worker's log line."""
    with db.transaction() as session:
        if isinstance(outcome, Done):
            if not outbox.mark_done(session, item.id, worker_id, outcome.result):
                return not_held(session, item, worker_id)
            # The message is locked before anything below reads or writes it (the copy's record,
            # the receipt), in the order every change takes it.
            locked = lock_message(session, item.message_id) if item.message_id is not None else None
            if outcome.apply is not None:
                outcome.apply(session)
            if locked is not None and item.kind in RECEIPT_KINDS:
                reached = "skipped" not in (outcome.result or {})
                settle_delivery(session, locked[0].id, reached=reached, locked=locked)
            posted = outcome.result.get(POSTED_DIGEST) if outcome.result else None
            if locked is not None and posted:
                # A copy of a message that can still change under it (see the performers).
                follow_late_copy(session, locked, item.id, str(posted))
            return "done"
        if isinstance(outcome, Retry):
            state = outbox.schedule_retry(
                session,
                item.id,
                worker_id,
                outcome.error,
                delay=outcome.delay,
                count_attempt=outcome.count_attempt,
                at_least=outcome.at_least,
            )
            if state == "lost":
                return not_held(session, item, worker_id)
            if state != "failed":
                return state
            error = f"gave up after {item.attempts} attempts: {outcome.error}"
            tell_thread, line = True, None
        elif isinstance(outcome, Fail):
            if not outbox.mark_failed(session, item.id, worker_id, outcome.error):
                return not_held(session, item, worker_id)
            error, tell_thread, line = outcome.error, outcome.tell_thread, outcome.thread_line
        else:
            raise TypeError(f"settle() does not take {type(outcome).__name__}")
        report_failure(session, item, error, tell_thread=tell_thread, told=line)
        return "failed"


def not_held(session: Session, item: OutboxItem, worker_id: str) -> str:
    """Why the row is not this worker's to settle: "recorded" when this worker recorded its end
    already, "lost" when its lease passed to another worker."""
    return "recorded" if outbox.recorded_by(session, item.id, worker_id) else "lost"


def settle_pause(db: Database, worker_id: str, item: OutboxItem, error: str) -> None:
    """The token stopped working: the row waits, due at once, its attempt not counted."""
    with db.transaction() as session:
        outbox.schedule_retry(session, item.id, worker_id, error, delay=timedelta(0), count_attempt=False)


def report_failure(
    session: Session, item: OutboxItem, error: str, *, tell_thread: bool, told: str | None = None
) -> None:
    if item.message_id is not None and item.kind in RECEIPT_KINDS:
        settle_delivery(session, item.message_id, failed_error=error)
    if not tell_thread or item.ticket_id is None or item.kind in UNTOLD_KINDS:
        return
    ticket = session.get(Ticket, item.ticket_id)
    if ticket is None or (item.kind == Kind.THREAD_POST and not ticket.triage_ts):
        return
    if told is not None:  # the performer's own words for what happened (`Fail.thread_line`)
        what = told
    elif item.kind == Kind.THREAD_POST:
        what = NOT_SHOWN.format(error=escape_mrkdwn(error))
    elif item.kind == Kind.EMAIL:
        to = str(item.payload.get("to") or "the customer")
        requester = to.lower() == (ticket.requester.email or "").lower()
        what = delivery_failed(ticket.number, to, error, requester=requester)
    elif item.kind in ORIGIN_KINDS:
        what = slack_delivery_failed(error)
    elif item.kind == Kind.REACTION:
        # A mark on a message in the thread (a receipt, the note lock), not a delivery: saying "a
        # delivery failed" after a note, or after a reply that went out, tells staff the opposite.
        mark = item.payload.get("add") or item.payload.get("remove")
        what = f":warning: Couldn't mark a message here with :{mark}: ({escape_mrkdwn(error)})."
    else:
        what = f":warning: A delivery failed: {escape_mrkdwn(error)}."
    thread_line(session, ticket, what)
