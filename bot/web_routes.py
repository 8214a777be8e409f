"""HTTP routes beside Slack's: unsubscribe links, the original message, files too large to email.

- `GET /unsubscribe/<key>` shows a page with one button; `POST /unsubscribe/<key>` unsubscribes. A GET
  never changes anything, because mail scanners and link previews fetch every link in a message;
  RFC 8058 one-click is that same POST, sent by the mail client with `List-Unsubscribe=One-Click`.
- `GET /raw/<message id>/<token>` downloads an inbound message's original .eml, and
  `GET /files/<attachment id>/<token>` a file of a staff reply, until staff delete that reply; both
  only with the token the desk signed (mail.links).
  Anything else is a plain 404 that says nothing about which part was wrong.

Downloads are always `Content-Disposition: attachment` with `nosniff`: customer content is never
rendered by the browser on our origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from html import escape
from urllib.parse import quote

from aiohttp import web

from mail.compose import safe_filename
from mail.links import token_matches
from store.context import Desk
from store.db import StoreUnavailable
from store.intake_keys import link_secret, participant_by_key, unsubscribe_by_key
from store.models import MAX_ROW_ID, Attachment, Message, Ticket

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "60"
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:32em;margin:3em auto">
<h1 style="font-size:1.3em">{title}</h1>
{body}
</body></html>
"""
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = PAGE.format(title=escape(title), body=body)
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


def _not_found() -> web.Response:
    return _page("Not found", "<p>This link is not valid.</p>", status=404)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _store_may_be_away(handler: Handler) -> Handler:
    """While the database is unavailable: a page that says to try again, 503 with Retry-After, as
    SMTP answers 451 and Slack's events 503, never a bare 500."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            log.warning("%s %s answered 503: %s", request.method, request.path, exc)
            response = _page(
                "Try again shortly",
                "<p>This page cannot be shown right now. Please try again in a minute.</p>",
                503,
            )
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return response

    return handle


class WebRoutes:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self._secret: bytes | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/unsubscribe/{key}", _store_may_be_away(self.unsubscribe_page)),
            web.post("/unsubscribe/{key}", _store_may_be_away(self.unsubscribe)),
            web.get("/raw/{message_id:\\d+}/{token}", _store_may_be_away(self.raw_message)),
            web.get("/files/{attachment_id:\\d+}/{token}", _store_may_be_away(self.file)),
        ]

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]

        def find() -> tuple[str, int] | None:
            with self.desk.db.read() as session:
                participant = participant_by_key(session, key)
                if participant is None:
                    return None
                ticket = session.get(Ticket, participant.ticket_id)
                return participant.email, ticket.number if ticket else 0

        found = await asyncio.to_thread(find)
        if found is None:
            return _not_found()
        email, number = found
        # No action: the button posts to the page's own address, the link from the mail. An absolute
        # path would leave the prefix of a SERVICEDESK_PUBLIC_URL with a path (a reverse proxy
        # serving the desk under `https://example.com/desk`) and reach another site's page.
        return _page(
            "Stop emails about this ticket",
            f"<p>Stop sending email about ticket #{number} to {escape(email)}?</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>',
        )

    async def unsubscribe(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        # The body is `List-Unsubscribe=One-Click` from a mail client (RFC 8058 section 3.2), or
        # empty from our own page's button: both mean the same thing here.
        await request.read()

        def apply() -> str | None:
            with self.desk.db.transaction() as session:
                participant = unsubscribe_by_key(session, key, via="unsubscribe link")
                return participant.email if participant is not None else None

        email = await asyncio.to_thread(apply)
        if email is None:
            return _not_found()
        return _page("Unsubscribed", f"<p>{escape(email)} gets no more email about this ticket.</p>")

    async def raw_message(self, request: web.Request) -> web.StreamResponse:
        message_id = int(request.match_info["message_id"])
        token = request.match_info["token"]
        if not 1 <= message_id <= MAX_ROW_ID:  # no row has it, and the database cannot look it up
            return _not_found()

        def find() -> str | None:
            with self.desk.db.read() as session:
                message = session.get(Message, message_id)
                sha = message.raw_sha256 if message is not None else None
            if sha and token_matches(token, self._link_secret(), "raw", message_id, sha):
                return sha
            return None

        sha256 = await asyncio.to_thread(find)
        if sha256 is None or not self.desk.files.exists(sha256):
            return _not_found()
        return self._download(sha256, f"message-{message_id}.eml", "message/rfc822")

    async def file(self, request: web.Request) -> web.StreamResponse:
        attachment_id = int(request.match_info["attachment_id"])
        token = request.match_info["token"]
        if not 1 <= attachment_id <= MAX_ROW_ID:
            return _not_found()

        def find() -> tuple[str, str] | None:
            with self.desk.db.read() as session:
                attachment = session.get(Attachment, attachment_id)
                if attachment is None:
                    return None
                message = session.get(Message, attachment.message_id)
                if message is None or message.deleted_at is not None:
                    # Staff deleted the reply (a wrong file, the wrong customer): the email cannot be
                    # called back, but the file behind its link is ours to stop serving.
                    return None
                sha, name = attachment.sha256, attachment.filename
            if token_matches(token, self._link_secret(), "file", attachment_id, sha):
                return sha, name
            return None

        found = await asyncio.to_thread(find)
        if found is None or not self.desk.files.exists(found[0]):
            return _not_found()
        # Whatever the sender called it, the browser gets bytes to save, never a page to render.
        return self._download(found[0], found[1], "application/octet-stream")

    def _download(self, sha256: str, filename: str, content_type: str) -> web.FileResponse:
        name = safe_filename(filename)
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"  # RFC 6266
        headers = {**DOWNLOAD_HEADERS, "Content-Type": content_type, "Content-Disposition": disposition}
        return web.FileResponse(self.desk.files.path_for(sha256), headers=headers)

    def _link_secret(self) -> bytes:
        if self._secret is None:
            self._secret = link_secret(self.desk.db)
        return self._secret


def extra_routes(desk: Desk) -> list[web.RouteDef]:
    return WebRoutes(desk).routes()
