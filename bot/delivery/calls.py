"""One Slack Web API call as delivery needs it: paced by the gate, its failure turned into an outcome.

Performers call `SlackCalls.call(...)`; anything that ends the attempt raises `Stop` with the outcome
the worker settles (DESIGN.md "Delivery"): a 429 defers the row without counting an attempt and
blocks only its channel (posts) or its method; a 5xx, a timeout or a dropped connection retries,
and the next attempt first looks for what the lost call may have done; a dead token pauses all
Slack delivery; Slack's other refusals fail the row with a reason a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.delivery.rate_gate import Deferred, RateGate
from bot.outcomes import Fail, Outcome, Pause, Retry
from bot.slack_errors import REFUSED_TOKEN
from bot.slack_errors import retry_after as slack_retry_after

log = logging.getLogger(__name__)

# The token no longer works: hold every Slack row until auth.test succeeds again. (Not
# `ekm_access_denied`: Enterprise Key Management can deny one channel while the token works, and
# auth.test answering ok would resume delivery only for the same post to pause it again, forever.)
PAUSE_ERRORS = REFUSED_TOKEN | {"org_login_required"}
# Slack's own trouble, worth another try later.
RETRY_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# Plain words for the refusals a support team can fix; others are named by their code.
FAIL_REASONS = {
    "channel_not_found": "the channel no longer exists, or the app cannot see it",
    "not_in_channel": "the app is not a member of the channel (invite it there)",
    "is_archived": "the channel is archived",
    "msg_too_long": "the message is too long for Slack",
    "invalid_blocks": "Slack rejected the message layout (invalid_blocks)",
    "missing_scope": "the app lacks a permission; reinstall it from the manifest",
    "restricted_action": "the workspace does not let the app post there",
    "ekm_access_denied": "the workspace's key management (EKM) denies the app access there",
    "thread_not_found": "the thread no longer exists",
    "cant_update_message": "the message cannot be edited by the app",
    "cant_delete_message": "the message cannot be deleted by the app",
}
# Refusals of a channel as a whole, not of one message: a card refused with one of these waits
# for the channel to be fixed (bot.delivery.slack) instead of failing.
CHANNEL_REFUSALS = frozenset(
    FAIL_REASONS[code] for code in ("channel_not_found", "not_in_channel", "is_archived")
)
# A 429 without Retry-After (Slack always sends one; a proxy might not).
DEFAULT_RETRY_AFTER = 1.0
# A wait for a slot that ends this close to a 429's end is not worth a deferral.
BLOCK_TOLERANCE = 0.05


class Stop(Exception):
    """Ends a delivery attempt with `outcome` (raised from deep inside a performer)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(getattr(outcome, "error", "done"))
        self.outcome = outcome


def outcome_for_error(method: str, error: str) -> Outcome:
    if error in PAUSE_ERRORS:
        return Pause(f"Slack rejected the bot token ({error})")
    if error in RETRY_ERRORS:
        return Retry(f"{method}: Slack error {error}")
    reason = FAIL_REASONS.get(error, f"Slack refused it ({error})")
    return Fail(reason)


def defer(delay: float, reason: str) -> Stop:
    return Stop(Retry(reason, delay=timedelta(seconds=delay), count_attempt=False))


# After a call timed out, its retry waits this many call timeouts (45 s in production) first.
LATE_EFFECT_TIMEOUTS = 3


class SlackCalls:
    def __init__(self, client: AsyncWebClient, gate: RateGate | None = None) -> None:
        self.client = client
        self.gate = gate or RateGate()
        self._stopping = asyncio.Event()

    def stop_waiting(self) -> None:
        """The worker stops: calls waiting for their slot end now, as deferrals (see `_admit`)."""
        self._stopping.set()

    async def call(
        self,
        method: str,
        send: Callable[[], Awaitable[AsyncSlackResponse]],
        *,
        channel: str | None = None,
        ok_errors: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Run `send` (one Web API call of `method`) when the gate allows; its answer's data.

        Errors in `ok_errors` are answers the caller handles (`already_reacted`, ...): their
        data comes back with `ok: false` instead of ending the attempt.
        """
        await self._admit(method, channel)
        try:
            response = await send()
        except SlackApiError as exc:
            return self._refused(method, channel, exc, ok_errors)
        # A TimeoutError is a request that may or may not have reached Slack, and that Slack may
        # still carry out after we stopped waiting: the next attempt, which looks for it before it
        # posts again, waits until such a late effect would have landed, or it would find nothing
        # and post a second copy. (Checked first: aiohttp's timeouts are ClientErrors too.)
        except TimeoutError as exc:
            # The row's exponential, jittered backoff comes on top of this wait (DESIGN: retries
            # back off with jitter): timeouts in a burst do not all come back at once 45 s later.
            wait = timedelta(seconds=LATE_EFFECT_TIMEOUTS * float(self.client.timeout))
            error = f"{method}: no answer from Slack ({type(exc).__name__})"
            raise Stop(Retry(error, at_least=wait)) from exc
        # Refused and reset connections and server disconnects: the outcome is unknown too, but
        # settled by the time the connection is gone; the next attempt looks at once.
        except aiohttp.ClientError as exc:
            raise Stop(Retry(f"{method}: no answer from Slack ({type(exc).__name__})")) from exc
        data = response.data
        return data if isinstance(data, dict) else {"ok": True}

    async def _admit(self, method: str, channel: str | None) -> None:
        decision = self.gate.admit(method, channel)
        if isinstance(decision, Deferred):
            raise defer(decision.delay, decision.reason)
        if decision.wait > 0:
            loop = asyncio.get_running_loop()
            slot = loop.time() + decision.wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.wait)
            if self._stopping.is_set():
                # A stop while waiting for the slot: this call never left, so the row goes back
                # due at its slot, its attempt not counted. Cut off by the stop's drain instead, it
                # would count as a call whose outcome is unknown: due only once such a call's late
                # effect would have landed (45 s), and read for in the thread before posting.
                raise defer(max(slot - loop.time(), 0.0), f"{method}: the worker stopped before its turn")
        left = self.gate.blocked_for(method, channel)
        if left > BLOCK_TOLERANCE:  # a 429 arrived while this call waited for its slot
            raise defer(left, f"{method}: rate limited by Slack")

    def _refused(
        self, method: str, channel: str | None, exc: SlackApiError, ok_errors: frozenset[str]
    ) -> dict[str, Any]:
        response = exc.response
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or "")
        if response.status_code == 429 or error == "ratelimited":
            retry_after = slack_retry_after(response.headers, DEFAULT_RETRY_AFTER)
            self.gate.blocked(method, channel, retry_after)
            where = f" in {channel}" if channel and method == "chat.postMessage" else ""
            log.info("Slack rate-limited %s%s for %.0fs", method, where, retry_after)
            raise defer(retry_after, f"{method}{where}: rate limited by Slack for {retry_after:.0f}s")
        if response.status_code >= 500 or not error:
            # Slack's edge answers 5xx with an HTML page; the call may have taken effect.
            raise Stop(Retry(f"{method}: Slack answered HTTP {response.status_code}"))
        if error in ok_errors:
            return data
        raise Stop(outcome_for_error(method, error))
