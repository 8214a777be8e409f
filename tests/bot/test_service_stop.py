"""How `serve` stops its components together (`_stop_together`): each one ends, cancelled when it
is late, and no failure is lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.service import _stop_together


class Stops:
    """Components to stop, recording how each one ended."""

    def __init__(self) -> None:
        self.ended: dict[str, str] = {}

    def quick(self, name: str):
        async def stop() -> None:
            await asyncio.sleep(0)
            self.ended[name] = "stopped"

        return stop

    def failing(self, name: str):
        async def stop() -> None:
            await asyncio.sleep(0)
            self.ended[name] = "failed"
            raise RuntimeError(f"{name} failed")

        return stop

    def late(self, name: str, *, fails_when_cancelled: bool = False):
        async def stop() -> None:
            try:
                await asyncio.Event().wait()  # never ends by itself
            except asyncio.CancelledError:
                self.ended[name] = "cancelled"
                if fails_when_cancelled:
                    raise RuntimeError(f"{name} failed as it was cancelled") from None
                raise

        return stop


def test_a_failure_is_raised_once_every_component_has_stopped() -> None:
    stops = Stops()
    with pytest.raises(RuntimeError, match="smtp failed"):
        asyncio.run(_stop_together([stops.failing("smtp"), stops.quick("http"), stops.quick("worker")], 5))
    assert stops.ended == {"smtp": "failed", "http": "stopped", "worker": "stopped"}


def test_a_late_component_is_cancelled_and_its_failure_raised() -> None:
    stops = Stops()
    components = [stops.late("smtp", fails_when_cancelled=True), stops.quick("http")]
    with pytest.raises(RuntimeError, match="as it was cancelled"):
        asyncio.run(_stop_together(components, 0.05))
    assert stops.ended == {"smtp": "cancelled", "http": "stopped"}


def test_a_late_component_cancelled_quietly_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    stops = Stops()
    asyncio.run(_stop_together([stops.late("smtp"), stops.quick("http")], 0.05))
    assert stops.ended == {"smtp": "cancelled", "http": "stopped"}
    assert "1 component(s) did not stop in time" in caplog.text


def test_a_second_failure_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    stops = Stops()
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="smtp failed"):
        asyncio.run(_stop_together([stops.failing("smtp"), stops.failing("http")], 5))
    assert "another component failed to stop" in caplog.text and "http failed" in caplog.text


def test_cancelling_the_stop_cancels_every_component() -> None:
    stops = Stops()

    async def cancelled_while_stopping() -> None:
        stopping = asyncio.ensure_future(_stop_together([stops.late("smtp"), stops.late("http")], 60))
        await asyncio.sleep(0.01)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        await asyncio.sleep(0)  # the components' cancellations run
        # Before the loop ends (which would cancel whatever is left running anyway).
        assert stops.ended == {"smtp": "cancelled", "http": "cancelled"}

    asyncio.run(cancelled_while_stopping())
