"""A TCP proxy that can freeze: every connection stays open but nothing more passes either way, as
when the network to the database drops packets or the database server is stopped (SIGSTOP, a VM
paused, a failover in progress). Unlike a cut, neither side learns anything: reads wait on."""

from __future__ import annotations

import contextlib
import socket
import threading


class FreezeProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._held = 0  # chunks received while frozen, not passed on
        threading.Thread(target=self._accept, name="freeze-proxy", daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def held(self) -> int:
        """How many chunks arrived since the freeze and are held (a client waiting on an answer)."""
        return self._held

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not self._flowing.is_set():
                self._held += 1
            self._flowing.wait()  # frozen: hold what came, pass nothing, close nothing
            if self._closed.is_set():
                return
            try:
                sink.sendall(data)
            except OSError:
                return
