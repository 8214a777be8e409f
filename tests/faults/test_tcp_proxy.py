"""The proxy the outage tests cut: every cut refuses, every restore accepts again."""

from __future__ import annotations

import socket

import pytest

from tests.faults.tcp_proxy import TcpProxy


@pytest.mark.parametrize("cuts", [1, 3])
def test_the_proxy_itself_recovers(cuts: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    proxy = TcpProxy("127.0.0.1", int(server.getsockname()[1]))
    port = proxy.start()
    try:
        for _ in range(cuts):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as before:
                peer, _ = server.accept()
                before.sendall(b"x")
                assert peer.recv(1) == b"x"  # the proxy pipes: it knows the connection
                assert proxy.cut() == {peer.getpeername()[1]}  # the server-side connection it dropped
                assert before.recv(1) == b""
                peer.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
            proxy.restore()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as accepted:
            peer, _ = server.accept()
            peer.sendall(b"ok")
            assert accepted.recv(2) == b"ok"
            peer.close()
    finally:
        proxy.stop()
        server.close()
