"""The relay client against real SMTP servers on 127.0.0.1: aiosmtpd controllers on ephemeral ports, and raw
sockets for relays that misbehave below SMTP."""

from __future__ import annotations

import asyncio
import hmac
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mail.compose import OutboundAttachment, OutboundMail, compose
from mail.relay import DeliveryStatus, RelayConfig, RelayConnection
from mail.render import render_markdown
from mail.templates import TemplateContext, load_templates
from tests.mail.test_compose import outbound

SENDER = "support+bounce-k3y@acme.test"
MESSAGE = (
    b"From: support@acme.test\r\nTo: bob@customer.test\r\nSubject: hi\r\nMessage-ID: <m1@acme.test>\r\n"
    b"\r\nHello\r\n"
)
TIMEOUT = 10.0  # a bound for a broken test, never an assertion


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any
    tls: bool
    smtputf8: bool = False


@dataclass
class Handler:
    """Accepts everything unless told otherwise; remembers what it accepted and over which connection."""

    received: list[Received] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)  # replies to the next MAIL commands, in order
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # reply to RCPT TO for an address
    data_replies: list[str] = field(default_factory=list)  # replies to the next messages, in order
    close_after_next_message: bool = False  # accept, reply, then drop the connection (idle timeout)
    vanish_on_next_message: bool = False  # keep the message, drop the connection before replying

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        transport = server.transport
        assert transport is not None
        tls = transport.get_extra_info("ssl_object") is not None
        content = envelope.original_content or b""
        rcpt_tos = list(envelope.rcpt_tos)
        received = Received(str(envelope.mail_from), rcpt_tos, content, session.peer, tls, envelope.smtp_utf8)
        self.received.append(received)
        if self.vanish_on_next_message:
            self.vanish_on_next_message = False
            transport.close()
        elif self.close_after_next_message:
            self.close_after_next_message = False
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 2.0.0 Queued as 1234"


class EphemeralController(Controller):
    """aiosmtpd's Controller on a port the kernel picks (port=0), so parallel runs never collide."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[EphemeralController] = []

    def start(handler: Handler, **smtp_parameters: Any) -> EphemeralController:
        controller = EphemeralController(handler, hostname="127.0.0.1", port=0, **smtp_parameters)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        if controller._thread is not None:
            controller.stop()


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def relay_config(serve: Any, handler: Handler) -> RelayConfig:
    controller = serve(handler)
    return RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}?timeout={TIMEOUT}")


@pytest.fixture
def refused_port() -> Iterator[int]:
    # A socket bound but not listening: connecting to its port is refused, and no one else can take it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def raw_server() -> Iterator[Any]:
    """A listening socket that says ``greeting`` (or nothing at all) to whoever connects."""
    listeners: list[socket.socket] = []

    def start(greeting: bytes | None) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listeners.append(listener)
        if greeting is not None:

            def answer() -> None:
                connection, _ = listener.accept()
                with connection:
                    connection.sendall(greeting)
                    connection.settimeout(TIMEOUT)
                    try:
                        while connection.recv(1024):
                            pass
                    except OSError:
                        pass

            threading.Thread(target=answer, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed, so no throwaway certificate can be made for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificate(cert, key)


# --- delivered ----------------------------------------------------------------------------------------


def test_delivered(relay_config: RelayConfig, handler: Handler):
    with RelayConnection(relay_config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED
    assert (result.code, result.text, result.stage) == (250, "2.0.0 Queued as 1234", "data")
    (received,) = handler.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["bob@customer.test"]
    assert received.content == MESSAGE


def test_one_connection_and_one_transaction_per_recipient(relay_config: RelayConfig, handler: Handler):
    recipients = ["bob@customer.test", "carol@customer.test", "dan@other.test"]
    with RelayConnection(relay_config) as relay:
        results = [relay.send(SENDER, recipient, MESSAGE) for recipient in recipients]
    assert [r.status for r in results] == [DeliveryStatus.DELIVERED] * 3
    assert [r.rcpt_tos for r in handler.received] == [[recipient] for recipient in recipients]
    assert len({r.peer for r in handler.received}) == 1


def test_a_batch_with_nothing_to_send_opens_no_connection():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{port}?timeout={TIMEOUT}")):
            pass
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected
            listener.accept()


def test_null_sender_is_allowed_for_bounces(relay_config: RelayConfig, handler: Handler):
    with RelayConnection(relay_config) as relay:
        assert relay.send("", "bob@customer.test", MESSAGE).status is DeliveryStatus.DELIVERED
    assert handler.received[0].mail_from == "<>"


# --- refused by the relay --------------------------------------------------------------------------------


def test_temporary_refusal_then_success(relay_config: RelayConfig, handler: Handler):
    handler.data_replies.append("451 4.3.0 Try again later")
    with RelayConnection(relay_config) as relay:
        first = relay.send(SENDER, "bob@customer.test", MESSAGE)
        second = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert first.status is DeliveryStatus.TEMPORARY
    assert (first.code, first.text, first.stage) == (451, "4.3.0 Try again later", "data")
    assert not first.relay_problem
    assert second.status is DeliveryStatus.DELIVERED
    assert len(handler.received) == 1


def test_recipient_refused_at_rcpt_is_permanent(relay_config: RelayConfig, handler: Handler):
    handler.rcpt_replies["nobody@customer.test"] = "550 5.1.1 No such user"
    with RelayConnection(relay_config) as relay:
        refused = relay.send(SENDER, "nobody@customer.test", MESSAGE)
        after = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert refused.status is DeliveryStatus.PERMANENT
    assert (refused.code, refused.text, refused.stage) == (550, "5.1.1 No such user", "rcpt")
    assert refused.describe() == "550 5.1.1 No such user (at RCPT)"
    # The session was reset and goes on with the next recipient.
    assert after.status is DeliveryStatus.DELIVERED
    assert [r.rcpt_tos for r in handler.received] == [["bob@customer.test"]]
    assert handler.received[0].peer == handler.received[-1].peer


def test_recipient_deferred_at_rcpt_is_temporary(relay_config: RelayConfig, handler: Handler):
    handler.rcpt_replies["busy@customer.test"] = "450 4.2.1 Mailbox busy"
    with RelayConnection(relay_config) as relay:
        result = relay.send(SENDER, "busy@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.TEMPORARY, 450, "rcpt")


def test_message_refused_at_data_is_permanent(relay_config: RelayConfig, handler: Handler):
    handler.data_replies.append("554 5.6.0 Message rejected as spam")
    with RelayConnection(relay_config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
        after = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.PERMANENT
    assert (result.code, result.text, result.stage) == (554, "5.6.0 Message rejected as spam", "data")
    assert after.status is DeliveryStatus.DELIVERED


def test_sender_refused_at_mail_is_permanent(relay_config: RelayConfig, handler: Handler):
    handler.mail_replies.append("553 5.7.1 Sender address not allowed")
    with RelayConnection(relay_config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.PERMANENT, 553, "mail")
    assert handler.received == []


def test_message_too_large_for_the_relay_is_refused_before_it_is_sent(serve: Any, handler: Handler):
    controller = serve(handler, data_size_limit=len(MESSAGE) - 1)
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.PERMANENT, 552, "mail")
    assert handler.received == []


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        (SENDER, "not-an-address"),
        (SENDER, "bob@customer.test>\r\nRCPT TO:<x@y.test"),
        (SENDER, "bob smith@customer.test"),
        ("bounce@acme.test\r\nRSET", "bob@customer.test"),
    ],
)
def test_malformed_envelope_address_is_permanent_and_sends_nothing(
    relay_config: RelayConfig, handler: Handler, sender: str, recipient: str
):
    with RelayConnection(relay_config) as relay:
        result = relay.send(sender, recipient, MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.PERMANENT, "envelope")
    assert handler.received == []


# --- connection failures ------------------------------------------------------------------------------


def test_connection_refused_is_temporary(refused_port: int):
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{refused_port}")) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.TEMPORARY
    assert (result.code, result.stage) == (None, "connect")
    assert "ConnectionRefusedError" in result.text
    assert result.relay_problem


def test_relay_that_never_greets_times_out_as_temporary(raw_server: Any):
    port = raw_server(None)  # listens, never speaks
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{port}?timeout=0.2")) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.TEMPORARY, None, "connect")


def test_relay_refusing_service_at_greeting_is_a_relay_problem(raw_server: Any):
    port = raw_server(b"554 5.3.2 No service for you\r\n")
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{port}?timeout={TIMEOUT}")) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    # The relay refusing us says nothing about this message: it stays queued until the relay is fixed.
    assert result.status is DeliveryStatus.TEMPORARY
    assert (result.code, result.text, result.stage) == (554, "5.3.2 No service for you", "connect")
    assert result.relay_problem


def test_idle_connection_closed_by_the_relay_is_reopened_once(relay_config: RelayConfig, handler: Handler):
    handler.close_after_next_message = True
    with RelayConnection(relay_config) as relay:
        first = relay.send(SENDER, "bob@customer.test", MESSAGE)
        second = relay.send(SENDER, "carol@customer.test", MESSAGE)
        third = relay.send(SENDER, "dan@other.test", MESSAGE)
    assert [r.status for r in (first, second, third)] == [DeliveryStatus.DELIVERED] * 3
    assert [r.rcpt_tos for r in handler.received] == [
        ["bob@customer.test"],
        ["carol@customer.test"],
        ["dan@other.test"],
    ]
    peers = [r.peer for r in handler.received]
    assert peers[0] != peers[1] == peers[2]


def test_relay_closing_with_421_before_a_transaction_is_reopened_once(
    relay_config: RelayConfig, handler: Handler
):
    with RelayConnection(relay_config) as relay:
        assert relay.send(SENDER, "bob@customer.test", MESSAGE).status is DeliveryStatus.DELIVERED
        handler.mail_replies.append("421 4.4.2 Idle too long, closing")
        result = relay.send(SENDER, "carol@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED
    assert [r.rcpt_tos for r in handler.received] == [["bob@customer.test"], ["carol@customer.test"]]


def test_relay_gone_mid_batch_is_temporary_after_one_reconnect(serve: Any, handler: Handler):
    controller = serve(handler)
    config = RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}?timeout={TIMEOUT}")
    handler.close_after_next_message = True
    with RelayConnection(config) as relay:
        assert relay.send(SENDER, "bob@customer.test", MESSAGE).status is DeliveryStatus.DELIVERED
        controller.stop()
        result = relay.send(SENDER, "carol@customer.test", MESSAGE)
        again = relay.send(SENDER, "dan@other.test", MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.TEMPORARY, "connect")
    assert "ConnectionRefusedError" in result.text
    assert (again.status, again.stage) == (DeliveryStatus.TEMPORARY, "connect")
    assert len(handler.received) == 1


def test_connection_lost_after_the_message_was_sent_is_never_resent(
    relay_config: RelayConfig, handler: Handler
):
    # The relay took the message and vanished before answering: the outcome is unknown. The client reports
    # temporary (the outbox decides about a retry) and does not send the message again by itself.
    handler.vanish_on_next_message = True
    with RelayConnection(relay_config) as relay:
        lost = relay.send(SENDER, "bob@customer.test", MESSAGE)
        next_one = relay.send(SENDER, "carol@customer.test", MESSAGE)
    assert (lost.status, lost.code, lost.stage) == (DeliveryStatus.TEMPORARY, None, "data")
    assert "may or may not have accepted" in lost.text
    assert next_one.status is DeliveryStatus.DELIVERED
    assert [r.rcpt_tos for r in handler.received] == [["bob@customer.test"], ["carol@customer.test"]]


# --- authentication -----------------------------------------------------------------------------------


@dataclass
class Authenticator:
    mechanisms: list[str] = field(default_factory=list)
    credentials: tuple[bytes, bytes] = (b"desk", b"p@ss:w/rd")

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and auth_data == self.credentials
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


# aiosmtpd rightly warns about AUTH without TLS; these tests are about AUTH alone, on 127.0.0.1.
no_tls_warning = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@no_tls_warning
@pytest.mark.parametrize(("excluded", "expected"), [([], "PLAIN"), (["PLAIN"], "LOGIN")])
def test_auth(serve: Any, handler: Handler, excluded: list[str], expected: str):
    authenticator = Authenticator()
    controller = serve(
        handler,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=excluded,
    )
    # The password is percent-encoded in the URL.
    config = RelayConfig.from_url(
        f"smtp://desk:p%40ss%3Aw%2Frd@127.0.0.1:{controller.port}?timeout={TIMEOUT}"
    )
    with RelayConnection(config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED
    assert authenticator.mechanisms == [expected]
    assert len(handler.received) == 1


@no_tls_warning
@pytest.mark.parametrize(("excluded", "expected"), [([], "PLAIN"), (["PLAIN"], "LOGIN")])
def test_auth_with_a_non_ascii_user_name_and_password(
    serve: Any, handler: Handler, excluded: list[str], expected: str
):
    """smtplib sends AUTH credentials as ASCII: a password such as "Grüße-2026€" raised
    UnicodeEncodeError out of the relay client, so no mail left at all. RFC 4616 (PLAIN) and
    common practice for LOGIN carry them as UTF-8."""
    authenticator = Authenticator(credentials=("jörg".encode(), "Grüße-2026€".encode()))
    controller = serve(
        handler,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=excluded,
    )
    config = RelayConfig.from_url(
        f"smtp://j%C3%B6rg:Gr%C3%BC%C3%9Fe-2026%E2%82%AC@127.0.0.1:{controller.port}?timeout={TIMEOUT}"
    )
    with RelayConnection(config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED, result
    assert authenticator.mechanisms == [expected]
    assert len(handler.received) == 1


CRAM_CHALLENGE = b"<1896.697170952@relay.test>"


class CramMd5SMTP(SMTP):
    """aiosmtpd with CRAM-MD5 (RFC 2195) too, which smtplib prefers to PLAIN and LOGIN when offered."""

    async def auth_CRAM__MD5(self, _server: SMTP, _args: list[str]) -> AuthResult:
        answer = await self.challenge_auth(CRAM_CHALLENGE)
        if not isinstance(answer, bytes):
            return AuthResult(success=False)
        user, _, digest = answer.rpartition(b" ")
        expected = hmac.new("Grüße-2026€".encode(), CRAM_CHALLENGE, "md5").hexdigest().encode()
        ok = user == "jörg".encode() and hmac.compare_digest(digest, expected)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user, b""))


class CramMd5Controller(EphemeralController):
    def factory(self) -> SMTP:
        return CramMd5SMTP(self.handler, **self.SMTP_kwargs)


@no_tls_warning
def test_cram_md5_with_a_non_ascii_user_name_and_password(handler: Handler):
    controller = CramMd5Controller(
        handler,
        hostname="127.0.0.1",
        port=0,
        authenticator=Authenticator(),
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        config = RelayConfig.from_url(
            f"smtp://j%C3%B6rg:Gr%C3%BC%C3%9Fe-2026%E2%82%AC@127.0.0.1:{controller.port}?timeout={TIMEOUT}"
        )
        with RelayConnection(config) as relay:
            result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    finally:
        controller.stop()
    assert result.status is DeliveryStatus.DELIVERED, result
    assert len(handler.received) == 1


@no_tls_warning
def test_wrong_password_is_a_relay_problem(serve: Any, handler: Handler):
    # One mechanism offered: smtplib tries every offered one in turn with the same password.
    controller = serve(
        handler,
        authenticator=Authenticator(),
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    config = RelayConfig.from_url(f"smtp://desk:wrong@127.0.0.1:{controller.port}?timeout={TIMEOUT}")
    with RelayConnection(config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.TEMPORARY, 535, "auth")
    assert result.relay_problem
    assert "wrong" not in result.text
    assert handler.received == []


@no_tls_warning
def test_missing_credentials_are_a_relay_problem(serve: Any, handler: Handler):
    controller = serve(handler, authenticator=Authenticator(), auth_required=True, auth_require_tls=False)
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.code, result.stage) == (DeliveryStatus.TEMPORARY, 530, "auth")
    assert result.relay_problem


def test_credentials_for_a_relay_without_auth_are_a_relay_problem(relay_config: RelayConfig):
    config = RelayConfig.from_url(f"smtp://desk:pw@127.0.0.1:{relay_config.port}")
    with RelayConnection(config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.TEMPORARY, "auth")


# --- TLS ----------------------------------------------------------------------------------------------


def test_starttls(serve: Any, handler: Handler, certificate: Certificate):
    controller = serve(handler, tls_context=certificate.server_context(), require_starttls=True)
    config = RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}?starttls=1&timeout={TIMEOUT}")
    with RelayConnection(config, ssl_context=certificate.client_context()) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED
    assert handler.received[0].tls


def test_starttls_with_auth(serve: Any, handler: Handler, certificate: Certificate):
    authenticator = Authenticator()
    controller = serve(
        handler,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    config = RelayConfig.from_url(
        f"smtp://desk:p%40ss%3Aw%2Frd@127.0.0.1:{controller.port}?starttls=1&timeout={TIMEOUT}"
    )
    with RelayConnection(config, ssl_context=certificate.client_context()) as relay:
        assert relay.send(SENDER, "bob@customer.test", MESSAGE).status is DeliveryStatus.DELIVERED
    assert authenticator.mechanisms == ["PLAIN"]


def test_starttls_verifies_the_certificate(serve: Any, handler: Handler, certificate: Certificate):
    controller = serve(handler, tls_context=certificate.server_context(), require_starttls=True)
    config = RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}?starttls=1&timeout={TIMEOUT}")
    with RelayConnection(config) as relay:  # the system's trust store does not know our throwaway cert
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.TEMPORARY, "starttls")
    assert "CERTIFICATE_VERIFY_FAILED" in result.text
    assert handler.received == []


def test_starttls_not_offered_is_a_relay_problem(relay_config: RelayConfig, handler: Handler):
    config = RelayConfig.from_url(f"smtp://127.0.0.1:{relay_config.port}?starttls=1&timeout={TIMEOUT}")
    with RelayConnection(config) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.TEMPORARY, "starttls")
    assert result.relay_problem
    assert handler.received == []


def test_smtps(serve: Any, handler: Handler, certificate: Certificate):
    controller = serve(handler, ssl_context=certificate.server_context())
    config = RelayConfig.from_url(f"smtps://127.0.0.1:{controller.port}?timeout={TIMEOUT}")
    with RelayConnection(config, ssl_context=certificate.client_context()) as relay:
        result = relay.send(SENDER, "bob@customer.test", MESSAGE)
    assert result.status is DeliveryStatus.DELIVERED
    assert handler.received[0].tls


# --- international addresses --------------------------------------------------------------------------


def test_idn_domain_is_sent_as_punycode(relay_config: RelayConfig, handler: Handler):
    with RelayConnection(relay_config) as relay:
        assert relay.send(SENDER, "bob@bücher.example", MESSAGE).status is DeliveryStatus.DELIVERED
    assert handler.received[0].rcpt_tos == ["bob@xn--bcher-kva.example"]


def test_non_ascii_local_part_uses_smtputf8(serve: Any, handler: Handler):
    controller = serve(handler, enable_SMTPUTF8=True)
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")) as relay:
        assert relay.send(SENDER, "jürgen@customer.test", MESSAGE).status is DeliveryStatus.DELIVERED
    assert handler.received[0].rcpt_tos == ["jürgen@customer.test"]


def test_a_mail_with_a_raw_utf8_address_arrives_intact_over_smtputf8(serve: Any, handler: Handler):
    controller = serve(handler, enable_SMTPUTF8=True)
    message = compose(
        outbound(to="Jürgen <jürgen@customer.test>", cc=("Ösa <ösa@customer.test>",), subject="Grüße")
    )
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")) as relay:
        assert relay.send(SENDER, "jürgen@customer.test", message).status is DeliveryStatus.DELIVERED
    (received,) = handler.received
    assert received.smtputf8
    assert received.content == message  # the UTF-8 header bytes unchanged
    head = received.content.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert "\r\nTo: =?utf-8?q?J=C3=BCrgen?= <jürgen@customer.test>\r\n" in head
    assert "\r\nCc: =?utf-8?q?=C3=96sa?= <ösa@customer.test>\r\n" in head


def test_non_ascii_local_part_without_smtputf8_is_permanent(serve: Any, handler: Handler):
    controller = serve(handler, enable_SMTPUTF8=False)
    with RelayConnection(RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")) as relay:
        result = relay.send(SENDER, "jürgen@customer.test", MESSAGE)
    assert (result.status, result.stage) == (DeliveryStatus.PERMANENT, "envelope")
    assert "SMTPUTF8" in result.text
    assert handler.received == []


# --- the whole outbound path --------------------------------------------------------------------------


def test_rendered_and_composed_reply_arrives_intact(relay_config: RelayConfig, handler: Handler):
    reply = render_markdown("Hello **Bob**,\n\n1. restart\n2. retry\n\n<script>x</script>")
    rendered = load_templates(None).render(
        "staff_reply",
        TemplateContext(
            number=42,
            subject="Printer on fire",
            sender_name="Alice at ACME",
            support_address="support@acme.test",
            reply_address="support+k3y@acme.test",
            reply=reply,
        ),
    )
    message = compose(
        OutboundMail(
            sender_name="Alice at ACME",
            sender_address="support@acme.test",
            to="Bob <bob@customer.test>",
            cc=("carol@customer.test",),
            reply_to="support+k3y@acme.test",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id="r1.k3y@acme.test",
            in_reply_to="c1@customer.test",
            references=("c1@customer.test",),
            auto_submitted=None,
            list_unsubscribe_url=None,
            list_unsubscribe_mailto=None,
            attachments=(OutboundAttachment("log.txt", "text/plain", b"line\r\n.\r\n..dots\r\n"),),
        )
    )
    with RelayConnection(relay_config) as relay:
        result = relay.send(SENDER, "bob@customer.test", message)
    assert result.status is DeliveryStatus.DELIVERED
    (received,) = handler.received
    assert received.content == message  # byte for byte, dot-stuffing undone by the server
    parsed = message_from_bytes(received.content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Re: Printer on fire [#42]"
    assert parsed["In-Reply-To"] == "<c1@customer.test>"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().startswith("Hello *Bob*,\n\n1. restart\n2. retry\n\n<script>x</script>\n")
    attachment = next(parsed.iter_attachments())
    assert attachment.get_payload(decode=True) == b"line\r\n.\r\n..dots\r\n"
