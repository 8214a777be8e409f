"""451 when the store is unavailable, then the sender's retry succeeds and nothing is lost.

The database is made unreachable mid-run without touching the machine's shared server: SQLite's file
is moved away (its folder renamed, WAL files and all); PostgreSQL is reached through a TCP proxy the
test cuts.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from store.context import Desk
from store.db import Database
from store.settings import Settings
from tests.mail.intake_server import client, mail_bytes, running_intake, stored_items


@dataclass
class Outage:
    url: str
    cut: Callable[[], object]
    restore: Callable[[], object]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server; `cut()` drops every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.down = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down = True
        with self.lock:
            connections, self.open = self.open, []
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


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
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        yield Outage(proxied.render_as_string(hide_password=False), proxy.cut, proxy.restore)
    finally:
        proxy.close()


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


@pytest.mark.parametrize("cuts", [1, 3])
def test_the_proxy_itself_recovers(cuts: int) -> None:
    """The PostgreSQL path's proxy: every cut refuses, every restore accepts again."""
    server = socket.create_server(("127.0.0.1", 0))
    proxy = TcpProxy("127.0.0.1", int(server.getsockname()[1]))
    try:
        for _ in range(cuts):
            proxy.cut()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
                assert refused.recv(1) == b""
            proxy.restore()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as accepted:
            peer, _ = server.accept()
            peer.sendall(b"ok")
            assert accepted.recv(2) == b"ok"
            peer.close()
    finally:
        proxy.close()
        server.close()
