"""The /_sandbox/ control API: make people act and read the emulator's state from another process.

Everything is JSON. Actions answer `{"ok": true, ...}`; a mistake in the request (unknown user,
a channel the person is not in) answers 400 `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.actors import FileSpec
from sandbox.faults import RESPONSE_URL_FAULTS, Fault, FaultKind
from sandbox.render import message_json
from sandbox.state import JSON

if TYPE_CHECKING:
    from sandbox.slack_emulator import SlackEmulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _interaction_json(interaction: Any) -> JSON:
    return {
        "kind": interaction.kind,
        "trigger_id": interaction.trigger_id,
        "response_url": interaction.response_url,
        "answered": interaction.answered.is_set(),
        "acked": interaction.acked,
        "ack_payload": interaction.ack_payload,
    }


def control_routes(emulator: SlackEmulator) -> list[web.RouteDef]:
    state = emulator.state

    def action(fn: Callable[[JSON], JSON]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json() if request.can_read_body else {}
                return web.json_response({"ok": True, **fn(body)})
            except (ValueError, KeyError, TypeError) as error:
                return web.json_response({"ok": False, "error": str(error)}, status=400)

        return handle

    def post(body: JSON) -> JSON:
        files: list[FileSpec] = [
            (f["name"], str(f.get("content", "")).encode()) for f in body.get("files", [])
        ]
        ts = emulator.user_post(
            body["user"], body["channel"], body.get("text", ""), body.get("thread_ts"), files=files or None
        )
        return {"ts": ts}

    def edit(body: JSON) -> JSON:
        emulator.user_edit(body["user"], body["channel"], body["ts"], body["text"])
        return {}

    def delete(body: JSON) -> JSON:
        emulator.user_delete(body["user"], body["channel"], body["ts"])
        return {}

    def react(body: JSON) -> JSON:
        emulator.user_react(body["user"], body["channel"], body["ts"], body["name"])
        return {}

    def join(body: JSON) -> JSON:
        emulator.user_join(body["user"], body["channel"])
        return {}

    def leave(body: JSON) -> JSON:
        emulator.user_leave(body["user"], body["channel"])
        return {}

    def open_home(body: JSON) -> JSON:
        emulator.user_open_home(body["user"])
        return {}

    def command(body: JSON) -> JSON:
        channel = body.get("channel") or emulator.default_command_channel
        interaction = emulator.user_command(body["user"], channel, body["command"], body.get("text", ""))
        return _interaction_json(interaction)

    def shortcut(body: JSON) -> JSON:
        interaction = emulator.user_shortcut(
            body["user"], body["channel"], body["ts"], body.get("callback_id", "create_ticket")
        )
        return _interaction_json(interaction)

    def block_action(body: JSON) -> JSON:
        interaction = emulator.user_block_action(
            body["user"], body["channel"], body["message_ts"], body["action_id"], body.get("value")
        )
        return _interaction_json(interaction)

    def view_submission(body: JSON) -> JSON:
        interaction = emulator.user_view_submission(body["user"], body["view_id"], body.get("values", {}))
        return _interaction_json(interaction)

    def faults(body: JSON) -> JSON:
        fault = Fault.from_dict(body)
        times = body.get("times", 1)
        emulator.add_fault(body["method"], fault, channel=body.get("channel"), times=times)
        return {}

    def rate_limits(body: JSON) -> JSON:
        emulator.rate_limits(enabled=bool(body.get("enabled", True)))
        return {}

    def events_target(body: JSON) -> JSON:
        emulator.deliver_events_to(body.get("url"), body.get("signing_secret"))
        return {}

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        emulator.clear_faults()
        return web.json_response({"ok": True})

    async def messages(request: web.Request) -> web.StreamResponse:
        channel = request.query.get("channel", "")
        thread_ts = request.query.get("thread_ts")
        with state.lock:
            found = [
                {**message_json(state, m, include_metadata=True), "deleted": m.deleted}
                for m in emulator.messages(channel, thread_ts)
            ]
        return web.json_response({"ok": True, "messages": found})

    async def calls(request: web.Request) -> web.StreamResponse:
        method = request.query.get("method")
        found = [dataclasses.asdict(c) for c in emulator.calls if method is None or c.method == method]
        for record in found:
            record.pop("token", None)  # never hand out the token, even a sandbox one
        return web.json_response({"ok": True, "calls": found})

    async def responses(request: web.Request) -> web.StreamResponse:
        with state.lock:
            posts = [dataclasses.asdict(p) for p in state.response_posts]
            ephemerals = [dataclasses.asdict(e) for e in state.ephemerals]
        return web.json_response({"ok": True, "responses": posts, "ephemerals": ephemerals})

    async def idle(request: web.Request) -> web.StreamResponse:
        timeout = float(request.query.get("timeout", "5"))
        try:
            await emulator.wait_idle_async(timeout)
        except TimeoutError:
            return web.json_response({"ok": False, "error": "timeout", "pending": emulator.pending})
        return web.json_response({"ok": True})

    async def workspace(request: web.Request) -> web.StreamResponse:
        ws = state.workspace
        return web.json_response(
            {
                "ok": True,
                "home": dataclasses.asdict(ws.home),
                "users": [dataclasses.asdict(u) for u in ws.users.values()],
                "channels": [dataclasses.asdict(c) for c in ws.channels.values()],
                "api_url": emulator.api_url,
            }
        )

    async def response_url(request: web.Request) -> web.StreamResponse:
        from sandbox.http_api import drop_connection, read_response_body

        try:
            body = await read_response_body(request)
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        # Connection faults only: what a client that retries after a reset does with an answer.
        fault = emulator.faults.take(RESPONSE_URL_FAULTS, None)
        if fault is not None and fault.kind in (FaultKind.RESET_BEFORE_EFFECT, FaultKind.RESET_AFTER_EFFECT):
            if fault.kind is FaultKind.RESET_AFTER_EFFECT and isinstance(body, dict):
                emulator.apply_response(str(request.url), body)
            drop_connection(request)
            return web.Response(status=500)  # the transport is gone: nothing reaches the client
        if not isinstance(body, dict) or not emulator.apply_response(str(request.url), body):
            return web.json_response({"ok": False, "error": "used_url"}, status=404)
        return web.json_response({"ok": True})

    return [
        web.post("/_sandbox/act/post", action(post)),
        web.post("/_sandbox/act/edit", action(edit)),
        web.post("/_sandbox/act/delete", action(delete)),
        web.post("/_sandbox/act/react", action(react)),
        web.post("/_sandbox/act/join", action(join)),
        web.post("/_sandbox/act/leave", action(leave)),
        web.post("/_sandbox/act/open_home", action(open_home)),
        web.post("/_sandbox/act/command", action(command)),
        web.post("/_sandbox/act/shortcut", action(shortcut)),
        web.post("/_sandbox/act/block_action", action(block_action)),
        web.post("/_sandbox/act/view_submission", action(view_submission)),
        web.post("/_sandbox/faults", action(faults)),
        web.delete("/_sandbox/faults", clear_faults),
        web.post("/_sandbox/rate_limits", action(rate_limits)),
        web.post("/_sandbox/events_target", action(events_target)),
        web.get("/_sandbox/messages", messages),
        web.get("/_sandbox/calls", calls),
        web.get("/_sandbox/responses", responses),
        web.get("/_sandbox/idle", idle),
        web.get("/_sandbox/workspace", workspace),
        web.post("/_sandbox/response/{key}", response_url),
    ]
