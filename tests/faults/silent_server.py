"""A server that takes TCP connections and never says a word: an SMTP relay that does not greet, a
PostgreSQL server that does not answer the startup message (overloaded, or a half-dead proxy)."""

from __future__ import annotations

import socket
from types import TracebackType

WAIT_SECONDS = 20.0  # bounds a broken test; never an assertion about speed


class SilentServer:
    """``with SilentServer() as server:`` connect to ``server.port``; ``server.accept()`` is the
    connection the server holds open, without writing to it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self._listener.settimeout(WAIT_SECONDS)
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for connection in self._held:
            connection.close()
        self._listener.close()

    def accept(self) -> socket.socket:
        """The next connection a client made (waits for it)."""
        connection, _ = self._listener.accept()
        connection.settimeout(WAIT_SECONDS)
        self._held.append(connection)
        return connection


def ended_by_client(connection: socket.socket) -> bool:
    """True once the client closed or shut down its side (reads what it sent before, if anything)."""
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset: ended too
        pass
    return True
