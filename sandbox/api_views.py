"""views.open / push / update / publish: modals and the App Home tab.

A trigger_id is issued with each slash command, shortcut and block action and can be exchanged once
(`exchanged_trigger_id` after that), as on Slack. Slack also expires them after 3 s; the emulator does
not, so slow test machines do not make tests flaky.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.api_base import Call, SlackError, method
from sandbox.blocks import MAX_VIEW_BLOCKS, validate_blocks
from sandbox.render import view_json
from sandbox.state import JSON, SlackState, View, random_id


def _view_body(call: Call, allowed: tuple[str, ...]) -> JSON:
    body: Any = call.structured("view")
    if not isinstance(body, dict) or body.get("type") not in allowed:
        raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid view type"]})
    errors = validate_blocks(body.get("blocks", []), limit=MAX_VIEW_BLOCKS)
    if errors:
        raise SlackError(
            "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in errors]}
        )
    return body


def _exchange_trigger(call: Call) -> str:
    state = call.state
    trigger_id = call.require("trigger_id", "invalid_trigger_id")
    with state.lock:
        if trigger_id not in state.triggers:
            raise SlackError("invalid_trigger_id")
        if state.triggers[trigger_id]:
            raise SlackError("exchanged_trigger_id")
        state.triggers[trigger_id] = True
    return trigger_id


def store_view(state: SlackState, body: JSON, user: str, **extra: Any) -> View:
    view = View(
        id=random_id("V"),
        team_id=state.workspace.home.id,
        type=str(body["type"]),
        body=body,
        user=user,
        hash=f"{int(state.next_ts().split('.')[0])}.{secrets.token_hex(4)}",
        external_id=body.get("external_id"),
        **extra,
    )
    with state.lock:
        state.views[view.id] = view
    state.changed()
    return view


@method("views.open")
def views_open(call: Call) -> JSON:
    body = _view_body(call, ("modal",))
    trigger_id = _exchange_trigger(call)
    view = store_view(call.state, body, user="", trigger_id=trigger_id)
    return {"ok": True, "view": view_json(call.state, view)}


@method("views.push")
def views_push(call: Call) -> JSON:
    body = _view_body(call, ("modal",))
    trigger_id = _exchange_trigger(call)
    view = store_view(call.state, body, user="", trigger_id=trigger_id)
    return {"ok": True, "view": view_json(call.state, view)}


@method("views.update")
def views_update(call: Call) -> JSON:
    state = call.state
    body = _view_body(call, ("modal", "home"))
    view_id = call.get("view_id")
    external_id = call.get("external_id")
    view = state.views.get(view_id or "")
    if view is None and external_id:
        view = next((v for v in state.views.values() if v.external_id == external_id), None)
    if view is None:
        raise SlackError("not_found")
    expected = call.get("hash")
    if expected is not None and expected != view.hash:
        raise SlackError("hash_conflict")
    view.body = body
    view.hash = f"{int(state.next_ts().split('.')[0])}.{secrets.token_hex(4)}"
    state.changed()
    return {"ok": True, "view": view_json(state, view)}


@method("views.publish")
def views_publish(call: Call) -> JSON:
    state = call.state
    user = call.user("user_id")
    body = _view_body(call, ("home",))
    with state.lock:
        current = state.views.get(state.home_views.get(user.id, ""))
    expected = call.get("hash")
    if current is not None and expected is not None and expected != current.hash:
        raise SlackError("hash_conflict")
    view = store_view(state, body, user=user.id)
    with state.lock:
        state.home_views[user.id] = view.id
    return {"ok": True, "view": view_json(state, view)}
