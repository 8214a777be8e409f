"""An SMTP server that keeps every message it receives, for tests of outbound mail.

    sink = MailSink().start()          # aiosmtpd Controller on 127.0.0.1, an ephemeral port
    ... send to sink.host:sink.port ...
    [mail] = sink.wait_for(1)
    mail.message["Subject"], mail.rcpt_tos, mail.raw
    sink.stop()

Faults: `fail_next(n, code)` answers the next n messages at DATA with a 4xx/5xx, then recovers;
`reject_recipient(address, code)` refuses one recipient at RCPT until `clear_faults()`. With
`auth=(user, password)` the sink requires AUTH PLAIN/LOGIN (allowed without TLS, for tests).
`python -m sandbox.mail_sink --port N` prints each message it receives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import threading
import time
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

DEFAULT_TEMPORARY = "451 4.3.0 Temporary failure, try again later"
DEFAULT_PERMANENT = "554 5.0.0 Message rejected"
DEFAULT_RECIPIENT_REJECT = "550 5.1.1 No such user"


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    peer: Any
    auth_user: str | None = None
    received: float = field(default_factory=time.monotonic)


@dataclass
class _RecipientRule:
    address: str
    reply: str


def _reply_for(code: int, message: str | None) -> str:
    if message:
        return f"{code} {message}"
    return DEFAULT_TEMPORARY if 400 <= code < 500 else DEFAULT_PERMANENT.replace("554", str(code), 1)


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # aiosmtpd hook names are fixed
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.sink._recipient_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd hook names are fixed
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        failure = self.sink._take_failure()
        if failure is not None:
            with self.sink._lock:
                self.sink.refused += 1
            return failure
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        parsed = _parse(raw, smtputf8=envelope.smtp_utf8)
        auth_user = None
        if session.auth_data is not None and isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode()
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=parsed,  # policy.default parses to EmailMessage
            peer=session.peer,
            auth_user=auth_user,
        )
        self.sink._store(mail)
        return "250 2.0.0 OK: queued"


def _parse(raw: bytes, *, smtputf8: bool) -> EmailMessage:
    """The message as EmailMessage. In an SMTPUTF8 transaction its headers are UTF-8 (RFC 6532), which
    BytesParser would leave as surrogate escapes (a "jörg" address would not compare equal); the body is
    read as BytesParser reads it."""
    if smtputf8:
        head, separator, body = raw.partition(b"\r\n\r\n")
        text = head.decode("utf-8", errors="surrogateescape") + (separator + body).decode(
            "ascii", errors="surrogateescape"
        )
        return Parser(policy=email.policy.default).parsestr(text)
    return BytesParser(policy=email.policy.default).parsebytes(raw)


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user = user.encode()
        self.password = password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller, bound to port 0 so the kernel picks a free port."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def bind() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


class MailSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: tuple[str, str] | None = None,
        data_size_limit: int = 64 * 1024 * 1024,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.auth = auth
        self.data_size_limit = data_size_limit
        self.messages: list[ReceivedMail] = []
        self.refused = 0
        self._failures: list[str] = []
        self._recipient_rules: list[_RecipientRule] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._controller: _EphemeralPortController | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> MailSink:
        kwargs: dict[str, Any] = {"data_size_limit": self.data_size_limit}
        if self.auth is not None:
            # AUTH without TLS is deliberate here (a local test relay); aiosmtpd warns on every session.
            warnings.filterwarnings(
                "ignore", "Requiring AUTH while not requiring TLS", UserWarning, "aiosmtpd.smtp"
            )
            kwargs.update(
                authenticator=_Authenticator(*self.auth),
                auth_required=True,
                auth_require_tls=False,  # tests talk plain SMTP on localhost
            )
        self._controller = _EphemeralPortController(
            _Handler(self), hostname=self.host, port=self._requested_port, **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the mail sink is not running")
        return int(self._controller.port)

    @property
    def url(self) -> str:
        """An smtp:// URL for SERVICEDESK_SMTP_RELAY_URL, with the credentials when AUTH is on."""
        credentials = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"smtp://{credentials}{self.host}:{self.port}"

    # -- faults --------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, code: int = 451, message: str | None = None) -> None:
        """Answer the next `count` messages at DATA with `code` (4xx temporary, 5xx permanent)."""
        with self._lock:
            self._failures.extend([_reply_for(code, message)] * count)

    def reject_recipient(self, address: str, code: int = 550, message: str | None = None) -> None:
        """Refuse `address` at RCPT until clear_faults()."""
        reply = f"{code} {message}" if message else DEFAULT_RECIPIENT_REJECT.replace("550", str(code), 1)
        if 400 <= code < 500 and not message:
            reply = f"{code} 4.2.0 Mailbox temporarily unavailable"
        with self._lock:
            self._recipient_rules.append(_RecipientRule(address.lower(), reply))

    def clear_faults(self) -> None:
        with self._lock:
            self._failures.clear()
            self._recipient_rules.clear()

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _recipient_reply(self, address: str) -> str | None:
        with self._lock:
            for rule in self._recipient_rules:
                if rule.address == address.lower():
                    return rule.reply
        return None

    # -- what arrived --------------------------------------------------------------------------
    def _store(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self.messages)} of {count} messages arrived within {timeout} s")
                self._arrived.wait(remaining)
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.refused = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an SMTP sink that prints every message.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--auth", help="require AUTH with USER:PASSWORD")
    args = parser.parse_args(argv)
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = (user, password)
    sink = MailSink(args.host, args.port, auth=auth).start()
    print(f"mail sink listening on {sink.host}:{sink.port}", flush=True)
    shown = 0
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            try:
                mails = sink.wait_for(shown + 1, timeout=60)
            except TimeoutError:
                continue
            for mail in mails[shown:]:
                print(f"--- from {mail.mail_from} to {', '.join(mail.rcpt_tos)}", flush=True)
                print(mail.raw.decode("utf-8", errors="replace"), flush=True)
            shown = len(mails)
    sink.stop()


if __name__ == "__main__":
    main()
