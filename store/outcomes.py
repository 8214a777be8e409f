"""What a delivery attempt came to, as the worker needs to settle it.

Performers (Slack, email) return one of these instead of raising, so the worker keeps temporary
and permanent failures apart and settles each row in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

# Runs inside the transaction that marks the row done (e.g. record the posted ts on the ticket).
Apply = Callable[[Session], None]


@dataclass(frozen=True)
class Done:
    result: dict[str, Any] = field(default_factory=dict)
    apply: Apply | None = None


@dataclass(frozen=True)
class Retry:
    """Temporary: try again later. `count_attempt=False` for waits that are not failures (a 429)."""

    error: str
    delay: timedelta | None = None
    count_attempt: bool = True
    # No sooner than this, whatever the backoff: the row's usual backoff (exponential, jittered) is
    # added on top, so rows that failed together come back apart and repeated failures wait longer.
    at_least: timedelta | None = None


@dataclass(frozen=True)
class Fail:
    """Permanent: the row fails now and the ticket's thread is told, in plain words: the usual line
    for its kind of row, or `thread_line` when the performer knows better what happened."""

    error: str
    tell_thread: bool = True
    thread_line: str | None = None


@dataclass(frozen=True)
class Pause:
    """The Slack token stopped working: hold all Slack delivery, keep the rows."""

    error: str


Outcome = Done | Retry | Fail | Pause
