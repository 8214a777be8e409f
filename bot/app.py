"""The Bolt app: request verification on, listeners registered, errors answered without tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped, warning_token_skipped
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners import register_all
from store.context import Desk
from store.db import StoreUnavailable

log = logging.getLogger(__name__)


# How long one Web API call may take before its outcome counts as unknown (the row is retried, and
# its next attempt looks before it posts again).
SLACK_CALL_TIMEOUT_SECONDS = 15.0


def slack_session(timeout: float = SLACK_CALL_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    """Kept-alive connections for a process's Web API calls. slack_sdk applies its client's timeout
    only to the sessions it opens itself, so a shared one must carry the same limit."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def slack_client(desk: Desk, *, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client, with slack_sdk's automatic retries off: the outbox owns retrying
    (its default handler re-posts after a connection reset, which is a double post).

    `session`: the connections to reuse (the service passes one for the process); without it each
    call opens its own. A kept-alive connection that the server closed meanwhile fails like a reset
    one: the row is retried, and its next attempt looks before it posts again."""
    return web_client(desk.settings.slack_bot_token, desk.settings.slack_api_url, session=session)


def web_client(
    token: str | None,
    api_url: str,
    *,
    timeout: float = SLACK_CALL_TIMEOUT_SECONDS,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """The client `slack_client` builds, for a token and an API URL (tests use it with theirs)."""
    return AsyncWebClient(
        token=token, base_url=api_url, retry_handlers=[], timeout=int(timeout), session=session
    )


def single_workspace_authorize(token: str | None) -> Callable[..., Awaitable[AuthorizeResult]]:
    """One workspace, one bot token: every request is authorized without a Slack call.

    Bolt's default asks `auth.test` on a process's first request, and when Slack answers that with
    a 429 or a 5xx it answers the request 200 itself, before any listener ran: Slack never resends
    an event answered 200, so it would be lost. Our listeners recognise bot messages by
    `bot_id`/`app_id` themselves, so Bolt needs none of the ids `auth.test` would give it.
    """

    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    return authorize


class _TokenGivenToAuthorize(logging.Filter):
    """Bolt warns that a token it found (SLACK_BOT_TOKEN in the environment, the client's) goes
    unused: `authorize` hands the bot token to every request, so the operator has nothing to fix."""

    SAID_ALREADY = frozenset({warning_token_skipped(), warning_client_prioritized_and_token_skipped()})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.SAID_ALREADY


logging.getLogger(f"slack_bolt.{AsyncApp.__name__}").addFilter(_TokenGivenToAuthorize())


def build_bolt_app(
    desk: Desk, *, client: AsyncWebClient | None = None, socket_mode: bool = False
) -> AsyncApp:
    app = AsyncApp(
        client=client or slack_client(desk),
        authorize=single_workspace_authorize(desk.settings.slack_bot_token),
        # Socket Mode requests are not signed; HTTP ones always are, and are verified.
        signing_secret=desk.settings.slack_signing_secret
        or ("unused-in-socket-mode" if socket_mode else None),
        request_verification_enabled=not socket_mode,
        # Store first, answer after: the HTTP response goes out when the listener has finished.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> BoltResponse:
        if isinstance(error, StoreUnavailable):
            log.error("request not stored, database unavailable: %s", error)
            # Non-2xx: Slack retries the event later; nothing is lost.
            return BoltResponse(status=503, body="")
        log.exception("listener failed", exc_info=error)
        return BoltResponse(status=500, body="")

    register_all(app, desk)
    return app
