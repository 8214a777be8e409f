"""The emulator's HTTP side: the Web API under /api/, file upload and download, response_url posts.

Order of checks for a Web API call, as Slack answers: unknown method, then the token (`not_authed`,
`invalid_auth`, `not_allowed_token_type`), then injected faults, then rate limits, then scopes
(`missing_scope`), then the method itself. Every call is recorded, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from sandbox import api_chat, api_conversations, api_files, api_views
from sandbox.api_base import METHODS, Call, SlackError
from sandbox.api_files import receive_upload
from sandbox.faults import Fault, FaultInjector, FaultKind
from sandbox.ratelimit import RateLimiter
from sandbox.state import JSON, CallRecord, SlackState

log = logging.getLogger(__name__)

SERVER_ERROR_PAGE = "<html><body><h1>Slack is having trouble</h1></body></html>"
LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in | Slack</title></head>"
    "<body><form action='/signin'><h1>Sign in to Acme</h1></form></body></html>"
)

# Importing the method modules registers their methods in METHODS.
_REGISTERED = (api_chat, api_conversations, api_files, api_views)


async def read_params(request: web.Request) -> JSON:
    """Parameters from the query string and a form, multipart or JSON body, as Slack accepts them."""
    params: JSON = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise SlackError("invalid_json") from None
        if isinstance(body, dict):
            params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def bearer_token(request: web.Request, params: JSON) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = params.pop("token", None)
    return str(token) if token else None


def drop_connection(request: web.Request) -> None:
    # Close the socket without an HTTP answer: the client sees a reset / remote disconnect.
    if request.transport is not None:
        request.transport.abort()


class WebApi:
    def __init__(self, state: SlackState, faults: FaultInjector, limiter: RateLimiter) -> None:
        self.state = state
        self.faults = faults
        self.limiter = limiter

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "x-oauth-scopes": ",".join(self.state.workspace.scopes),
            "x-slack-req-id": secrets.token_hex(16),
        }
        headers.update(extra or {})
        return headers

    def _check_token(self, method: str, token: str | None) -> None:
        ws = self.state.workspace
        spec = METHODS[method]
        if not token:
            raise SlackError("not_authed")
        if token not in (ws.bot_token, ws.app_token):
            raise SlackError("invalid_auth")
        wanted = ws.app_token if spec.token_type == "app" else ws.bot_token
        if token != wanted:
            raise SlackError("not_allowed_token_type")

    def _check_scope(self, method: str) -> None:
        scope = METHODS[method].scope
        scopes = self.state.workspace.scopes
        if scope and scope not in scopes:
            raise SlackError("missing_scope", needed=scope, provided=",".join(scopes))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        arrived = time.monotonic()
        params: JSON = {}
        token: str | None = None
        record = CallRecord(method, params, 200, False, None, arrived, None, peer=_peer(request))
        try:
            params = await read_params(request)
            token = bearer_token(request, params)
            record.params, record.token = params, token
            record.channel = str(params.get("channel") or params.get("channel_id") or "") or None
            if method not in METHODS:
                raise SlackError("unknown_method")
            self._check_token(method, token)
            fault = self.faults.take(method, record.channel)
            if fault is not None:
                response = await self._apply_fault(fault, request, method, params, token, record)
                if response is not None:
                    return response
            else:
                retry_after = self.limiter.check(method, record.channel)
                if retry_after is not None:
                    return self._ratelimited(record, retry_after)
            self._check_scope(method)
            body = self._run(method, params, token)
            record.ok = True
            return web.json_response(body, headers=self.headers())
        except SlackError as error:
            record.error = error.error
            return web.json_response(error.body(), headers=self.headers())
        except Exception:
            # A bug in the emulator, not a Slack answer: record it as such and let aiohttp log the
            # traceback and answer 500, so a test sees the failure instead of a plausible error code.
            record.status, record.error = 500, "emulator_error"
            raise
        finally:
            self.state.record_call(record)

    def _run(self, method: str, params: JSON, token: str | None) -> JSON:
        with self.state.lock:
            return METHODS[method].handler(Call(method, self.state, params, token))

    def _ratelimited(self, record: CallRecord, retry_after: int) -> web.Response:
        record.status, record.error = 429, "ratelimited"
        return web.json_response(
            {"ok": False, "error": "ratelimited"},
            status=429,
            headers=self.headers({"Retry-After": str(retry_after)}),
        )

    async def _apply_fault(
        self,
        fault: Fault,
        request: web.Request,
        method: str,
        params: JSON,
        token: str | None,
        record: CallRecord,
    ) -> web.StreamResponse | None:
        """Answer as the fault says; None means carry on with the call as usual."""
        if fault.kind is FaultKind.RATELIMITED:
            return self._ratelimited(record, fault.retry_after)
        if fault.kind is FaultKind.SERVER_ERROR:
            record.status, record.error = fault.status, f"http_{fault.status}"
            return web.Response(status=fault.status, text=SERVER_ERROR_PAGE, content_type="text/html")
        if fault.kind is FaultKind.SLACK_ERROR:
            raise SlackError(fault.error)
        if fault.kind is FaultKind.HANG:
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind is FaultKind.RESET_AFTER_EFFECT:
            try:
                self._check_scope(method)
                self._run(method, params, token)
                record.ok = True
            except SlackError as error:
                record.error = error.error
        record.status = 0
        record.error = record.error or "connection_reset"
        drop_connection(request)
        # aiohttp needs a response object; the transport is gone, so nothing reaches the client.
        return web.Response(status=500)


class Files:
    """Step 2 of the files v2 upload, and url_private downloads that need the bot token."""

    def __init__(self, state: SlackState) -> None:
        self.state = state

    async def upload(self, request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            content = b""
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and (part.filename is not None or part.name == "file"):
                    content = bytes(await part.read())
                    break
        else:
            content = await request.read()
        file = receive_upload(self.state, request.match_info["key"], content)
        if file is None:
            return web.Response(status=404, text="upload URL not found or already used")
        # Slack's upload endpoint answers in plain text with the byte count.
        return web.Response(text=f"OK - {len(content)}")

    async def download(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {self.state.workspace.bot_token}":
            # Slack redirects a request without a valid token to its sign-in page (HTML, 200):
            # a client that follows redirects and does not check the type saves a login page.
            login = f"{self.state.base_url}signin?redirect={quote(request.path)}"
            raise web.HTTPFound(login)
        team_file = request.match_info["team_file"]
        file_id = team_file.split("-", 1)[-1]
        file = self.state.files.get(file_id)
        if file is None or not file.uploaded or file.deleted:
            return web.Response(status=404, text="file not found")
        headers = {}
        if request.match_info.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{quote(file.name)}"'
        return web.Response(body=file.content, content_type=file.mimetype, headers=headers)

    async def signin(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")


def render_permalink(state: SlackState, request: web.Request) -> web.Response:
    """A plain page for a permalink, so links the product shows lead somewhere in local trials."""
    channel = request.match_info["channel"]
    compact = request.match_info["p"].removeprefix("p")
    ts = f"{compact[:-6]}.{compact[-6:]}"
    message = state.find_message(channel, ts)
    if message is None:
        return web.Response(status=404, text="message not found")
    author = state.workspace.users.get(message.user)
    name = message.username or (author.real_name if author else message.user)
    return web.Response(text=f"#{channel} {ts}\n{name}: {message.text}\n")


async def read_response_body(request: web.Request) -> Any:
    if request.content_type == "application/json":
        return await request.json()
    form = await request.post()
    payload = form.get("payload")
    return json.loads(payload) if isinstance(payload, str) else dict(form)


def _peer(request: web.Request) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None
