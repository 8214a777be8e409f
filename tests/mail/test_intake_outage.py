"""451 when the store is unavailable, then the sender's retry succeeds and nothing is lost.

The database is made unreachable mid-run without touching the machine's shared server: SQLite's file
is moved away (its folder renamed, WAL files and all); PostgreSQL is reached through a TCP proxy the
test cuts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from store.context import Desk
from store.db import Database
from store.settings import Settings
from tests.faults.tcp_proxy import TcpProxy
from tests.mail.intake_server import client, mail_bytes, running_intake, stored_items


@dataclass
class Outage:
    url: str
    cut: Callable[[], object]
    restore: Callable[[], object]


@contextmanager
def store_outage(database_url: str, tmp_path: Path) -> Iterator[Outage]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        folder = tmp_path / "store"
        folder.mkdir()
        shutil.copyfile(url.database, folder / "desk.db")
        away = tmp_path / "store-away"
        yield Outage(
            f"sqlite:///{folder / 'desk.db'}", lambda: folder.rename(away), lambda: away.rename(folder)
        )
        return
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.start())
        yield Outage(proxied.render_as_string(hide_password=False), proxy.cut, proxy.restore)
    finally:
        proxy.stop()


def send(port: int, raw: bytes) -> tuple[int, bytes]:
    with client(port) as smtp:
        smtp.mail("bob@customer.test")
        smtp.rcpt("support@acme.test")
        return smtp.data(raw)


def test_store_unavailable_gets_451_and_the_retry_is_kept(database_url: str, tmp_path: Path) -> None:
    with store_outage(database_url, tmp_path) as outage:
        db = Database(outage.url)
        desk = Desk.build(
            Settings(database_url=outage.url, support_address="support@acme.test", files_dir=tmp_path / "f"),
            db,
        )
        try:
            with running_intake(desk) as port:
                assert send(port, mail_bytes("<before@customer.test>"))[0] == 250
                outage.cut()
                code, text = send(port, mail_bytes("<during@customer.test>"))
                assert (code, text.split()[0]) == (451, b"4.3.0")
                outage.restore()
                # The sending server retries the same message later (RFC 5321 4.5.4.1).
                assert send(port, mail_bytes("<during@customer.test>"))[0] == 250
                assert send(port, mail_bytes("<after@customer.test>"))[0] == 250
            keys = [item.dedupe_key for item in stored_items(db)]
        finally:
            db.dispose()

    assert keys == ["email:before@customer.test", "email:during@customer.test", "email:after@customer.test"]


def test_rcpt_with_a_key_gets_451_not_550_while_the_store_is_away(database_url: str, tmp_path: Path) -> None:
    with store_outage(database_url, tmp_path) as outage:
        db = Database(outage.url)
        desk = Desk.build(Settings(database_url=outage.url, support_address="support@acme.test"), db)
        try:
            with running_intake(desk) as port:
                outage.cut()
                with client(port) as smtp:
                    smtp.mail("bob@customer.test")
                    code, _ = smtp.rcpt("support+" + "k" * 28 + "@acme.test")
                outage.restore()
        finally:
            db.dispose()
    # A key cannot be checked now: refusing it for good (550) could lose a real reply.
    assert code == 451
