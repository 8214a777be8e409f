"""Socket Mode's connection, watched: what `/healthz` and the log say about it.

slack_sdk's client reconnects by itself (every 10 s while Slack refuses), but it only logs each
failure as a multi-line error naming no setting, and nothing outside it could tell whether events
were arriving: `/healthz` said everything was fine while an app token revoked after the start left
the desk deaf to Slack. Here a refusal is said once, in one line naming `SLACK_APP_TOKEN`, and the
connection's state is kept for `/healthz`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from bot.slack_errors import REFUSED_APP_TOKEN

log = logging.getLogger(__name__)


class WatchedSocketModeClient(SocketModeClient):
    """slack_sdk's aiohttp client, keeping why it is not connected and since when."""

    def __init__(self, *args: object, clock: Callable[[], float] = time.monotonic, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._clock = clock
        self.problem: str | None = None
        self.down_since: float | None = None
        self.aiohttp_client_session = _OneConnectPerUrl(self.aiohttp_client_session, self)  # type: ignore[assignment]

    def connected(self) -> bool:
        """The client's own `is_connected`, without its awaiting (it only reads attributes)."""
        session = self.current_session
        return not self.closed and not self.stale and session is not None and not session.closed

    def state(self) -> str:
        """`connected`, or `disconnected for N s: <why>` for `/healthz`."""
        if self.connected():
            self.down_since = None
            return "connected"
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
        why = self.problem or "reconnecting"
        return f"disconnected for {int(now - self.down_since)} s: {why}"

    async def issue_new_wss_url(self) -> str:
        try:
            url = await super().issue_new_wss_url()
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in REFUSED_APP_TOKEN:
                self.failed(
                    f"Slack refused SLACK_APP_TOKEN ({code}): create an app-level token with the "
                    "connections:write scope, with Socket Mode on, and restart with it"
                )
            else:
                self.failed(f"apps.connections.open failed ({code})")
            raise
        except (aiohttp.ClientError, TimeoutError) as error:
            self.failed(f"Slack unreachable ({str(error) or type(error).__name__})")
            raise
        return url

    async def connect(self) -> None:
        await super().connect()
        if self.connected() and self.problem is not None:
            log.warning("Socket Mode connected again; Slack events arrive")
            self.problem = None
        self.down_since = None

    def failed(self, problem: str) -> None:
        if self.down_since is None:
            self.down_since = self._clock()
        if problem != self.problem:  # once per cause, not at every retry
            log.error("Socket Mode cannot connect: %s; no Slack events arrive until it does", problem)
        self.problem = problem


class _OneConnectPerUrl:
    """The client's aiohttp session, as slack_sdk uses it (`ws_connect`, `closed`, `close`).

    A URL from apps.connections.open is good for one connection: Slack's are single use and
    expire. slack_sdk's `connect` asks for one only when it has none, and tries a URL that failed
    to connect again every 10 s, forever: after a proxy's 502 or a network blip the desk never
    heard from Slack again. A URL that failed is forgotten here, so the next try asks for a new one.
    """

    def __init__(self, session: aiohttp.ClientSession, client: WatchedSocketModeClient) -> None:
        self._session = session
        self._client = client

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def close(self) -> None:
        await self._session.close()

    async def ws_connect(self, url: str, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self._session.ws_connect(url, **kwargs)
        except Exception as error:
            # Everything, and raised again as it came: whatever stopped this URL from connecting
            # (a refused handshake, a reset, a bad URL), the next try must ask Slack for a new one.
            self._client.wss_uri = None
            # Not the error's text: it holds the URL, whose ticket is not for the log.
            status = f" {error.status}" if isinstance(error, aiohttp.ClientResponseError) else ""
            self._client.failed(f"the Socket Mode URL did not connect ({type(error).__name__}{status})")
            raise


class WatchedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's aiohttp Socket Mode handler, on a `WatchedSocketModeClient`."""

    client: WatchedSocketModeClient

    def __init__(self, app: AsyncApp, app_token: str) -> None:
        # Not the parent's __init__: it would build (and start) a second, unwatched client.
        self.app = app
        self.app_token = app_token
        self.client = WatchedSocketModeClient(
            app_token=app_token, logger=app.logger, web_client=app.client, ping_interval=10
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
