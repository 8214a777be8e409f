"""The HTTP side: Slack's requests into Bolt at /slack/events, and /healthz for load balancers."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from store import inbound, outbox
from store.db import Database, StoreUnavailable
from store.service_state import slack_paused

# Slack sends at most a few KB per event; a bound keeps a hostile client from filling memory.
MAX_REQUEST_BYTES = 1024 * 1024
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"


def build_web_app(
    db: Database, bolt: AsyncApp | None, *, extra_routes: list[web.RouteDef] | None = None
) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def slack_events(request: web.Request) -> web.Response:
        if bolt is None:
            raise web.HTTPNotFound()
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if timestamp is not None and not (timestamp.isascii() and timestamp.isdigit()):
            # slack_sdk's verifier raises on a timestamp that is not a number, and Bolt would answer
            # 500; it is a request that fails verification like any other.
            return web.json_response({"error": "invalid request"}, status=401)
        bolt_request = await to_bolt_request(request)
        bolt_response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def healthz(_request: web.Request) -> web.Response:
        def probe() -> dict[str, object]:
            if not db.ping():
                raise StoreUnavailable("database unreachable")
            paused = slack_paused(db)
            return {
                "ok": True,
                "database": "ok",
                "slack_delivery": f"paused: {paused}" if paused else "ok",
                "oldest_due_delivery_seconds": outbox.oldest_due_age(db),
                # Accepted input that could not be made into tickets (`servicedesk outbox` lists it).
                "failed_intake": inbound.failed_count(db),
            }

        try:
            body = await asyncio.to_thread(probe)
        except StoreUnavailable:
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        return web.Response(text=json.dumps(body), content_type="application/json")

    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app
