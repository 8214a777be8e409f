"""The event loop `serve` and `demo` run on: uvloop where it installs, else asyncio's own.

uvloop runs the same asyncio program on libuv, with the loop, its transports and its selector in
C. One `serve` process runs its Python on one CPU at a time, and the loop's own work (the SMTP
dialogue, Slack's HTTP both ways, handing work to threads and back) is a good part of it: on
uvloop the service spent 0.87x the CPU per ticket end to end (bench/README.md, row 23). Nothing in
the service depends on which loop runs it; most in-process tests run it on asyncio's loop, the
demo's and those that start `servicedesk serve` on uvloop. Where uvloop does not install (it has
no Windows build), asyncio's loop runs it unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def loop_name() -> str:
    """What the startup log names: "uvloop" or "asyncio"."""
    return "asyncio" if loop_factory() is asyncio.new_event_loop else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop above."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
