"""The HTTP side: Slack's requests into Bolt at /slack/events, and /healthz for load balancers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from bot.edge_threads import EDGE_POOL, run_in
from store import inbound, outbox
from store.db import Database, StoreUnavailable
from store.service_state import slack_paused

log = logging.getLogger(__name__)

# Slack sends at most a few KB per event; a bound keeps a hostile client from filling memory.
MAX_REQUEST_BYTES = 1024 * 1024
# Unix seconds have 10 digits until the year 2286. Python's int() refuses a string of more than 4300
# digits (a ValueError inside the verifier: a 500), so a longer header is refused before it.
MAX_TIMESTAMP_DIGITS = 20


def build_web_app(
    db: Database,
    bolt: AsyncApp | None,
    *,
    signing_secret: str | None = None,
    extra_routes: list[web.RouteDef] | None = None,
    socket_mode_state: Callable[[], str] | None = None,
) -> web.Application:
    """`signing_secret`: every request to /slack/events is verified here, before Bolt. Bolt answers
    an `ssl_check` request 200 before it verifies anything, and a timestamp that is not a number
    makes its verifier raise (a 500); both must be a 401 like any unsigned request. Bolt still
    verifies too (one HMAC more): a caller that left the secret out here stays safe.

    `socket_mode_state`: in Socket Mode, how its connection is (`connected`, or since when and why
    not), said by /healthz: events come over it, not to /slack/events."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def slack_events(request: web.Request) -> web.Response:
        if bolt is None:
            raise web.HTTPNotFound()
        try:
            body = await request.read()
        except ConnectionResetError:  # the client went before its whole body came
            log.info("a request to /slack/events ended before its body did")
            return web.json_response({"error": "incomplete request"}, status=400)
        if verifier is not None and not _signed(verifier, body, request.headers):
            return web.json_response({"error": "invalid request"}, status=401)
        unreadable = _unreadable(body, request.headers.get("Content-Type"))
        if unreadable:
            log.warning("a signed request Bolt cannot read: %s", unreadable)
            return web.json_response({"error": "invalid request"}, status=400)
        bolt_request = await to_bolt_request(request)
        bolt_response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def healthz(_request: web.Request) -> web.Response:
        def probe() -> dict[str, object]:
            if not db.ping():
                raise StoreUnavailable("database unreachable")
            paused = slack_paused(db)
            # New tickets whose cards the triage channel refuses are invisible to staff: said
            # plainly here, as a paused delivery is (the service itself still takes input).
            waiting = outbox.waiting_for_triage(db)
            triage = f"unreachable: {waiting.said()}" if waiting.total else "ok"
            return {
                "ok": True,
                "database": "ok",
                "slack_delivery": f"paused: {paused}" if paused else "ok",
                "triage_channel": triage,
                "oldest_due_delivery_seconds": outbox.oldest_due_age(db),
                # Accepted input that could not be made into tickets (`servicedesk outbox` lists it).
                "failed_intake": inbound.failed_count(db),
            }

        # Read on the loop, where the Socket Mode client changes it.
        socket_mode = socket_mode_state() if socket_mode_state is not None else None
        try:
            # On the edge's threads: a node whose worker waits on busy tickets still answers its
            # health check, rather than be taken out of the load balancer for that.
            body = await run_in(EDGE_POOL, probe)
        except StoreUnavailable:
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        if socket_mode is not None:
            # Still 200 (the database answers, input taken so far is worked), as for a paused
            # delivery: the body says that no new Slack input arrives, and why.
            body["socket_mode"] = socket_mode
        return web.Response(text=json.dumps(body), content_type="application/json")

    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app


def _unreadable(body: bytes, content_type: str | None) -> str | None:
    """Why Bolt could not read a body, or None. Signed with Slack's secret, yet not an object (a
    JSON list, a `payload` that is not JSON) or an event that is not one: Bolt's parsing raises on
    these, or its middleware does, and the answer was a bare 500 with a traceback in the log."""
    try:
        parsed = parse_body(body.decode("utf-8"), content_type)
    except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
        return f"not UTF-8 JSON or form ({exc})"
    if not isinstance(parsed, dict):
        return f"a JSON {type(parsed).__name__}, not an object"
    if "event" in parsed and not isinstance(parsed["event"], dict):
        return "its event is not an object"
    return None


def _signed(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's signature over this body, made within the last 5 minutes (slack_sdk's check)."""
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not (
        timestamp and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS
    ):
        return False  # the verifier raises on a timestamp that is not a number, or too long a one
    if not (signature and signature.isascii()):
        return False  # hmac.compare_digest raises on a str that is not ASCII; Slack's are hex
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False  # Slack signs UTF-8 text; the verifier raises on anything else
    return verifier.is_valid(text, timestamp, signature)
