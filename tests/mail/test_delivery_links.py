"""The links outbound mail and the thread carry, served over real HTTP: unsubscribe, raw .eml, big files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot.http import build_web_app
from bot.web_routes import extra_routes
from mail.links import attachment_url, raw_message_url
from store import actions
from store.actions import Actor, NewAttachment
from store.context import Desk
from store.db import Database
from store.intake_keys import link_secret
from store.models import Attachment, Origin, Outbox, Participant
from store.settings import Settings
from tests.mail.test_intake_outage import store_outage

PUBLIC = "https://desk.acme.test"
RAW = b"From: bob@customer.test\r\nSubject: <script>alert(1)</script>\r\n\r\nhello\r\n"


def desk_on(db: Database, tmp_path: Path) -> Desk:
    settings = Settings(
        database_url=db.url,
        support_address="support@acme.test",
        files_dir=tmp_path / "files",
        triage_channel="C0TRIAGE",
        public_url=PUBLIC,
    )
    return Desk.build(settings, db)


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return desk_on(db, tmp_path)


def seed(desk: Desk) -> dict[str, object]:
    raw_sha = desk.files.put(RAW)
    file_sha = desk.files.put(b"\x00binary")
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, "bob@customer.test", "Bob")
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject="Help",
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor("Bob", email=customer.email),
        )
        message = actions.add_customer_message(
            session,
            desk.policy,
            ticket,
            customer=customer,
            body_markdown="hello",
            source="email",
            raw_sha256=raw_sha,
            attachments=[NewAttachment("page.html", "text/html", 7, file_sha)],
        )
        session.flush()
        participant = session.scalar(select(Participant).where(Participant.ticket_id == ticket.id))
        attachment = session.scalar(select(Attachment).where(Attachment.message_id == message.id))
        assert participant is not None and attachment is not None
        return {
            "key": participant.unsubscribe_key,
            "message_id": message.id,
            "raw_sha": raw_sha,
            "attachment_id": attachment.id,
            "file_sha": file_sha,
        }


Check = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


def serve(desk: Desk, check: Check) -> None:
    async def run() -> None:
        server = TestServer(build_web_app(desk.db, None, extra_routes=extra_routes(desk)))
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as client:
                await check(client, str(server.make_url("")).rstrip("/"))
        finally:
            await server.close()

    asyncio.run(run())


def unsubscribed(desk: Desk) -> bool:
    with desk.db.transaction() as session:
        participant = session.scalar(select(Participant))
        assert participant is not None
        return participant.unsubscribed_at is not None


def test_unsubscribe_page_changes_nothing_and_one_click_post_unsubscribes(desk: Desk) -> None:
    facts = seed(desk)

    async def check(client: aiohttp.ClientSession, base: str) -> None:
        async with client.get(f"{base}/unsubscribe/{facts['key']}") as response:
            assert response.status == 200
            assert "bob@customer.test" in await response.text()
        assert not unsubscribed(desk)
        for _ in range(2):  # RFC 8058 clients may POST more than once
            async with client.post(
                f"{base}/unsubscribe/{facts['key']}", data={"List-Unsubscribe": "One-Click"}
            ) as response:
                assert response.status == 200
        assert unsubscribed(desk)
        async with client.post(f"{base}/unsubscribe/{'x' * 28}") as response:
            assert response.status == 404

    serve(desk, check)
    with desk.db.transaction() as session:
        lines = [
            row.payload["text"]
            for row in session.scalars(select(Outbox).where(Outbox.kind == "slack.thread_line"))
        ]
    assert lines == ["bob@customer.test unsubscribed from this ticket's email (unsubscribe link)."]


def test_original_message_only_with_the_signed_link(desk: Desk) -> None:
    facts = seed(desk)
    secret = link_secret(desk.db)
    url = raw_message_url(PUBLIC, secret, int(str(facts["message_id"])), str(facts["raw_sha"]))
    path = url.removeprefix(PUBLIC)

    async def check(client: aiohttp.ClientSession, base: str) -> None:
        async with client.get(base + path) as response:
            assert response.status == 200
            assert await response.read() == RAW
            assert response.headers["Content-Type"] == "message/rfc822"
            assert response.headers["Content-Disposition"].startswith("attachment;")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        message_id = facts["message_id"]
        for forged in (
            f"/raw/{message_id}/{'a' * 32}",
            f"/raw/{int(str(message_id)) + 1}/{path.rsplit('/', 1)[1]}",
            f"/raw/{message_id}/{facts['raw_sha']}",
            f"/raw/{'9' * 30}/{path.rsplit('/', 1)[1]}",  # past the database's integers
        ):
            async with client.get(base + forged) as response:
                assert response.status == 404

    serve(desk, check)


def test_large_file_link_downloads_as_bytes_never_as_a_page(desk: Desk) -> None:
    facts = seed(desk)
    attachment_id = int(str(facts["attachment_id"]))
    url = attachment_url(PUBLIC, link_secret(desk.db), attachment_id, str(facts["file_sha"]))

    async def check(client: aiohttp.ClientSession, base: str) -> None:
        async with client.get(base + url.removeprefix(PUBLIC)) as response:
            assert response.status == 200
            assert await response.read() == b"\x00binary"
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert 'filename="page.html"' in response.headers["Content-Disposition"]
        for forged in (f"/files/{facts['attachment_id']}/{'b' * 32}", f"/files/{'9' * 30}/{'b' * 32}"):
            async with client.get(base + forged) as response:
                assert response.status == 404

    serve(desk, check)


def test_the_link_secret_is_made_once_and_shared(db: Database) -> None:
    first = link_secret(db)
    again = Database(db.url)
    try:
        assert link_secret(again) == first
    finally:
        again.dispose()
    assert len(first) == 32


def test_a_key_the_desk_never_issues_is_not_found_without_asking_the_database(desk: Desk) -> None:
    seed(desk)

    async def check(client: aiohttp.ClientSession, base: str) -> None:
        # A NUL, which PostgreSQL refuses in text outright (a 500 before), an overlong key, markup.
        for key in ("%00", "a" * 5000, "%3Cscript%3E", "%ff%fe"):
            async with client.get(f"{base}/unsubscribe/{key}") as response:
                assert response.status == 404
            async with client.post(f"{base}/unsubscribe/{key}") as response:
                assert response.status == 404

    serve(desk, check)
    assert not unsubscribed(desk)


def test_while_the_store_is_away_the_pages_say_try_again(database_url: str, tmp_path: Path) -> None:
    with store_outage(database_url, tmp_path) as outage:
        db = Database(outage.url)
        desk = desk_on(db, tmp_path)
        try:
            facts = seed(desk)
            secret = link_secret(db)
            file_url = attachment_url(
                PUBLIC, secret, int(str(facts["attachment_id"])), str(facts["file_sha"])
            )
            file_path = file_url.removeprefix(PUBLIC)

            async def check(client: aiohttp.ClientSession, base: str) -> None:
                outage.cut()
                for method, path in [
                    ("GET", f"/unsubscribe/{facts['key']}"),
                    ("POST", f"/unsubscribe/{facts['key']}"),
                    ("GET", file_path),
                ]:
                    async with client.request(method, base + path) as response:
                        assert response.status == 503, (method, path)
                        assert response.headers["Retry-After"] == "60"
                        assert "Please try again in a minute" in await response.text()
                outage.restore()
                async with client.post(f"{base}/unsubscribe/{facts['key']}") as response:
                    assert response.status == 200  # the same link works once the store is back

            serve(desk, check)
        finally:
            db.dispose()
