"""The loop `serve` and `demo` run on: uvloop when it is installed, asyncio's own without it."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bot import event_loop


async def _running_loop_type() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_runs_on_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert event_loop.run(_running_loop_type()).startswith("uvloop")
    assert event_loop.loop_name() == "uvloop"


def test_runs_on_asyncios_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails, as on Windows
    assert event_loop.run(_running_loop_type()).startswith("asyncio")
    assert event_loop.loop_name() == "asyncio"
