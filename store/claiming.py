"""The claim both queues share (the outbox and the intake queue): due rows, oldest first, one per lane.

A lane (the posts of one Slack thread, the mails of one sender) is performed in id order, so a row
is claimable only while no earlier row of its lane still waits. The statement is built once per
queue and shape and run with bind parameters (`now`, `limit`, and an expanding `kinds`): workers
claim after every finished delivery, and building `aliased`/`exists`/`or_`/`in_` each time cost
more CPU than running the query (bench/README.md, "What was slow, what changed", row 4).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    Update,
    bindparam,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, aliased

from store.models import InboundItem, InboundState, Outbox, OutboxState

Queue = TypeVar("Queue", Outbox, InboundItem)

# What a claim statement is run with: `execute(statement, claim_parameters(...))`.
NOW = "now"
LIMIT = "limit"
KINDS = "kinds"


def now_parameter(column: InstrumentedAttribute[Any]) -> Any:
    """`:now`, typed as the column it is compared with (UTCDateTime stores naive UTC on SQLite)."""
    return bindparam(NOW, type_=column.type)


def lane_is_free(model: type[Queue], waiting: Iterable[str]) -> ColumnElement[bool]:
    """No lane, or nothing earlier in the lane still waiting (pending, or claimed by a worker).

    Runs as a probe of the `(lane, state, id)` index (`ix_outbox_lane`, `ix_inbound_items_lane`)
    per candidate row.
    """
    earlier = aliased(model)
    blocked = exists().where(
        earlier.lane == model.lane,
        earlier.id < model.id,
        earlier.state.in_(list(waiting)),
    )
    return or_(model.lane.is_(None), ~blocked)


def claim_statement(
    model: type[Queue],
    *,
    due: ColumnElement[bool],
    order_by: tuple[Any, ...],
    waiting: Iterable[str],
    by_kind: bool,
    skip_locked: bool,
) -> Select[Queue]:
    """Due rows whose lane is free, in `order_by`, at most `:limit`; only `:kinds` when `by_kind`.

    `skip_locked` (PostgreSQL): rows another worker is claiming right now are passed over, not
    waited for, so any number of workers drain one table.
    """
    query = select(model).where(due, lane_is_free(model, waiting))
    if by_kind:
        query = query.where(model.kind.in_(bindparam(KINDS, expanding=True)))
    query = query.order_by(*order_by).limit(bindparam(LIMIT, type_=Integer))
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=model)
    return query


def claim_parameters(now: Any, limit: int, kinds: frozenset[str] | None) -> dict[str, Any]:
    parameters: dict[str, Any] = {NOW: now, LIMIT: limit}
    if kinds is not None:
        parameters[KINDS] = sorted(kinds)
    return parameters


CLAIMED: dict[type[Any], str] = {Outbox: OutboxState.CLAIMED, InboundItem: InboundState.CLAIMED}


def take(
    connection: Connection,
    model: type[Queue],
    query: Select[Queue],
    parameters: dict[str, Any],
    *,
    worker_id: str,
    until: datetime,
) -> Sequence[Row[Any]]:
    """Run the claim `query` and mark what it found claimed by `worker_id` until `until`, as Core
    rows: the claim runs after every refill, and loading and flushing its rows as objects cost
    more than the statements (bench/README.md, "What was slow", row 18). Each row's `attempts` is
    as it was before this claim counted one more."""
    rows = connection.execute(query, parameters).all()
    if rows:
        connection.execute(
            _claimed_statement(model),
            {"ids": [row.id for row in rows], "worker_id": worker_id, "until": until},
        )
    return rows


@functools.cache
def _claimed_statement(model: type[Queue]) -> Update:
    return (
        update(model)
        .where(model.id.in_(bindparam("ids", expanding=True)))
        .values(
            state=CLAIMED[model],
            claimed_by=bindparam("worker_id"),
            claimed_until=bindparam("until", type_=model.claimed_until.type),
            attempts=model.attempts + 1,
        )
    )
