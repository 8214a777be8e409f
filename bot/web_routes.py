"""HTTP routes beside Slack's: unsubscribe links, the original message, the web form."""

from __future__ import annotations

from aiohttp import web

from store.context import Desk


def extra_routes(desk: Desk) -> list[web.RouteDef]:
    return []
