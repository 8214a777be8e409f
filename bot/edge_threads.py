"""Threads of the Slack edge's own, for the database work done before Slack is answered.

asyncio's default pool (CPUs + 4 threads) is shared with the worker, whose transactions can hold
all of it (deliveries waiting on busy tickets, a slow database). Work queued behind them would
answer Slack after its 3 s: an event would be retried again and again, a `/desk` command or a
card press shown as failed. The SMTP intake keeps threads of its own for the same reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Each piece of work is one short transaction (a store, a verb under its 2.5 s limit, a cache read).
EDGE_THREADS = 8
EDGE_POOL = ThreadPoolExecutor(max_workers=EDGE_THREADS, thread_name_prefix="slack-edge")


async def run_in(executor: Executor | None, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` on `executor` (None: the loop's default pool), context variables kept."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
