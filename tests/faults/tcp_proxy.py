"""A TCP proxy a test can cut: the database "goes away" for the processes behind it while the
machine's shared PostgreSQL server keeps running for everyone else. It can also swallow the answer
to one COMMIT: the server carries the COMMIT out, and the client's connection is cut before the
answer reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import TypeVar

T = TypeVar("T")

# PostgreSQL's simple-query message for COMMIT, as psycopg sends it.
COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
KEPT_BYTES = 1_000_000  # of what a connection sent since its last COMMIT, for matching patterns


class _Link:
    """One proxied connection: what its client sent since its last COMMIT, and whether the answer
    to the COMMIT under way is to be swallowed."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.swallow = False


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._upstream_ports: set[int] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._swallow_after: tuple[bytes, ...] | None = None
        self.swallowed = threading.Event()

    def start(self) -> int:
        self._thread.start()
        self._call(self._listen())
        return self.port

    def cut(self) -> frozenset[int]:
        """Refuse new connections and drop every open one, as a dead server or network would.

        Returns the local ports of the dropped server-side connections: what the server had already
        received (a COMMIT, say) it may still finish after this returns, and these ports are how a
        test finds those sessions on the server and waits for them to end."""
        return self._call(self._cut())

    def swallow_commit_answer(self, *patterns: bytes) -> None:
        """The next COMMIT of a transaction that sent every one of `patterns` reaches the server;
        its answer does not reach the client, whose connection is cut. Once; `swallowed` is set."""
        self.swallowed.clear()
        self._swallow_after = patterns

    def restore(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> frozenset[int]:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        dropped, self._upstream_ports = frozenset(self._upstream_ports), set()
        return dropped

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        upstream_port = int(upstream_writer.get_extra_info("sockname")[1])
        self._writers.update((writer, upstream_writer))
        self._upstream_ports.add(upstream_port)
        link = _Link()
        await asyncio.gather(
            self._pipe(reader, upstream_writer, lambda data: self._watch_client(link, data)),
            self._pipe(
                upstream_reader, writer, lambda data: self._pass_answer(link, writer, upstream_writer)
            ),
            return_exceptions=True,
        )
        self._writers.difference_update((writer, upstream_writer))
        self._upstream_ports.discard(upstream_port)

    def _watch_client(self, link: _Link, data: bytes) -> bool:
        if COMMIT not in data:
            link.sent += data
            del link.sent[:-KEPT_BYTES]
            return True
        patterns = self._swallow_after
        if patterns is not None and all(pattern in bytes(link.sent) + data for pattern in patterns):
            self._swallow_after = None
            link.swallow = True
        link.sent.clear()
        return True

    def _pass_answer(self, link: _Link, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> bool:
        if not link.swallow:
            return True
        client.transport.abort()
        server.transport.abort()
        self.swallowed.set()
        return False

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, passes: Callable[[bytes], bool]
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not passes(data):
                    return
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
