"""The outbound SMTP relay client: one connection per batch, one transaction per recipient, every outcome
classified for the outbox.

The ``emails`` package's own send is not used: it has ``fail_silently=True`` and resends once after a
disconnect, which can deliver a mail twice. Here nothing is swallowed and nothing is resent once any of
the message has been transmitted; the outbox owns retries. The only automatic second try is a fresh
connection when an idle one turns out closed at our first command (MAIL FROM), before any of the message
was sent, so it cannot duplicate anything.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger(__name__)

SETTING = "SERVICEDESK_SMTP_RELAY_URL"
DEFAULT_URL = "smtp://127.0.0.1:1025"
EXPECTED = (
    "smtp://[user:password@]host[:port][?starttls=1] or smtps://[user:password@]host[:port], "
    "with optional ?timeout=SECONDS and ?helo=NAME"
)
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 3600
# An EHLO name: dot-separated labels of letters, digits and inner hyphens.
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HELO_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
MAX_HOST_NAME_CHARS = 253
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
# Stages before any transaction: a failure there is the relay's (down, refusing us, bad credentials, no
# TLS), never the message's, so it is temporary whatever the code: the outbox keeps the mail and retries
# while the operator fixes the relay, and the worker can report one outage instead of one error per mail.
SESSION_STAGES = frozenset({"connect", "ehlo", "starttls", "auth"})
RESERVED_ENVELOPE_CHARS = frozenset(" <>\t\r\n\x00")


class _Utf8Text(str):
    """Text that encodes to UTF-8 whatever codec is asked for (see _Utf8AuthSMTP)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "utf-8", errors)


class _Utf8AuthSMTP(smtplib.SMTP):
    """smtplib (3.11) encodes what it sends for AUTH as ASCII, so a user name or password with any other
    character ("Grüße-2026€") raised UnicodeEncodeError out of the login instead of logging in, and no
    mail left. PLAIN carries UTF-8 (RFC 4616), and LOGIN and CRAM-MD5 servers take the same bytes:
    each response is handed to smtplib as text that encodes to UTF-8 even when it asks for ASCII."""

    def auth_plain(self, challenge: ReadableBuffer | None = None) -> str:
        return _Utf8Text(super().auth_plain(challenge))

    def auth_login(self, challenge: ReadableBuffer | None = None) -> str:
        return _Utf8Text(super().auth_login(challenge))

    def auth_cram_md5(self, challenge: ReadableBuffer | None = None) -> str | None:  # type: ignore[override]
        if challenge is None:
            return None  # CRAM-MD5 has no initial response (as smtplib's own)
        digest = hmac.new(str(self.password).encode("utf-8"), challenge, "md5").hexdigest()
        return _Utf8Text(f"{self.user} {digest}")


class _Utf8AuthSMTPSSL(_Utf8AuthSMTP, smtplib.SMTP_SSL):
    """smtps://: TLS from the first byte, with the same AUTH as _Utf8AuthSMTP."""


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # 4xx or no answer: the outbox retries later
    PERMANENT = "permanent"  # 5xx: the outbox fails the row and reports it


@dataclass(frozen=True)
class SendResult:
    status: DeliveryStatus
    code: int | None  # the server's reply code; None when there was no reply (refused, reset, timeout)
    text: str  # the server's reply text, or what went wrong
    stage: str  # connect, ehlo, starttls, auth, envelope, mail, rcpt, data

    @property
    def relay_problem(self) -> bool:
        """True when the relay itself is unusable (rather than this message or recipient)."""
        return self.stage in SESSION_STAGES

    def describe(self) -> str:
        """One line for a log or a thread message, e.g. ``550 5.1.1 no such user (at RCPT)``."""
        code = f"{self.code} " if self.code is not None else ""
        return f"{code}{self.text} (at {self.stage.upper()})"


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int
    implicit_tls: bool = False  # smtps:// (RFC 8314 "implicit TLS", usually port 465)
    starttls: bool = False  # smtp:// with ?starttls=1 (RFC 3207)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    helo_name: str | None = None  # EHLO name; smtplib's default is this machine's FQDN

    @classmethod
    def from_url(cls, url: str) -> RelayConfig:
        """Parse ``SERVICEDESK_SMTP_RELAY_URL``; a malformed URL raises ValueError naming the setting."""
        try:
            return cls._parse(url.strip())
        except ValueError as error:
            raise ValueError(f"{SETTING}: {error}; expected {EXPECTED} (got {_redact(url)!r})") from None

    @classmethod
    def _parse(cls, url: str) -> RelayConfig:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"unknown scheme {parts.scheme + '://' if parts.scheme else 'missing'}")
        if not parts.hostname:
            raise ValueError("no host")
        try:
            parts.hostname.encode("idna")  # as socket.getaddrinfo will: a UnicodeError there is no OSError
        except UnicodeError:
            raise ValueError(
                "the host is no name a resolver takes (an empty label, or one over 63 characters)"
            ) from None
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("unexpected path after the host")
        port = parts.port  # raises ValueError when not a number
        if port == 0:
            raise ValueError("port 0 is not a port a relay can listen on")
        if port is None:
            port = DEFAULT_PORTS[parts.scheme]
        if parts.password is not None and not parts.username:
            raise ValueError("a password without a user name")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        options = dict(pairs)
        repeated = sorted({name for name, _ in pairs if [n for n, _ in pairs].count(name) > 1})
        if repeated:
            # `?starttls=1&starttls=0` would quietly be the last one: mail sent in the clear.
            raise ValueError(f"option {', '.join(repeated)} given more than once")
        unknown = sorted(set(options) - {"starttls", "timeout", "helo"})
        if unknown:
            raise ValueError(f"unknown option {', '.join(unknown)}")
        starttls = _flag(options.get("starttls", "0"), "starttls")
        if starttls and parts.scheme == "smtps":
            raise ValueError("starttls=1 with smtps:// (smtps is TLS from the start; use one or the other)")
        return cls(
            host=parts.hostname,
            port=port,
            implicit_tls=parts.scheme == "smtps",
            starttls=starttls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=_timeout(options.get("timeout")),
            helo_name=_helo_name(options.get("helo", "")),
        )

    def redacted_url(self) -> str:
        """The relay as a URL for logs and `servicedesk check`, without the password."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}" + ("?starttls=1" if self.starttls else "")


class RelayConnection:
    """One SMTP session for a batch of mails: ``with RelayConnection(config) as relay: relay.send(...)``.

    The connection opens on the first send (a batch with nothing to send costs nothing) and is reused for
    the next ones. ``send`` never raises for a delivery problem: it returns a SendResult. ``abort`` (from
    another thread) cuts off a send blocked on the relay.
    """

    def __init__(self, config: RelayConfig, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._opening: smtplib.SMTP | None = None  # a session still being set up (greeting, EHLO, TLS, AUTH)
        self._aborted = False

    def __enter__(self) -> RelayConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        smtp = self._smtp
        if smtp is None:
            return
        try:
            smtp.quit()  # still self._smtp meanwhile: abort() can cut off a QUIT that gets no answer
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the server is gone already; nothing is lost by not saying goodbye
        finally:
            self._smtp = None

    def abort(self) -> None:
        """Cut the connection off, from any thread: a send (or QUIT) blocked on the relay fails at once,
        as if the relay had dropped the connection, and no new session is opened.

        For a stop: smtplib blocks its thread for up to the timeout (60 s) on a relay that accepted the
        connection and went silent, a thread cannot be cancelled, and the process cannot exit while one
        runs. The socket is shut down, not closed: a close does not wake a thread blocked reading it (the
        sending thread closes it as it fails). Still waiting out the timeout: a thread inside the TCP
        handshake itself (a relay that does not even accept), where smtplib has no socket to reach yet.
        """
        self._aborted = True  # first: _connect checks it after publishing the session it opens
        for smtp in (self._opening, self._smtp):
            sock = smtp.sock if smtp is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):  # not connected, or closed meanwhile
                    # The TCP socket's own shutdown, below TLS: SSLSocket's would also unwrap it under
                    # the thread using it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def probe(self, envelope_from: str) -> SendResult | None:
        """Open the session a send would (greeting, EHLO, STARTTLS, AUTH), say MAIL FROM
        `envelope_from` and take it back (RSET): nothing is sent. None when the relay takes all of it,
        else why not, as a send would have had it: a relay that wants a login says so only at MAIL
        FROM (530), as does one that refuses the sender."""
        failure = self._connect() if self._smtp is None else None
        if failure is not None:
            return failure
        smtp = self._smtp_or_fail()
        try:
            code, reply = smtp.mail(envelope_from)
        except (smtplib.SMTPException, OSError) as error:
            self._drop()
            return SendResult(DeliveryStatus.TEMPORARY, None, _describe_error(error), "mail")
        if code == 530:  # RFC 4954 §6, as in _transact
            return self._refused(code, reply, "auth")
        if code != 250:
            return self._refused(code, reply, "mail")
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.rset()
        return None

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """One SMTP transaction: MAIL FROM ``envelope_from`` (the bounce address), RCPT TO ``recipient``,
        DATA ``message`` (bytes with CRLF line ends, as mail.compose makes them)."""
        envelope = _envelope(envelope_from, recipient)
        if isinstance(envelope, SendResult):
            return envelope
        sender, rcpt, needs_smtputf8 = envelope
        reused = self._smtp is not None
        result = self._connect_and_transact(sender, rcpt, needs_smtputf8, message)
        if result is None and reused:
            # The relay closed our idle connection (or said 421) before this transaction started: nothing
            # of this message went out, so one fresh connection is safe.
            logger.info(
                "smtp relay closed the idle connection; reconnecting once",
                extra={"relay": self.config.redacted_url()},
            )
            result = self._connect_and_transact(sender, rcpt, needs_smtputf8, message)
        if result is None:
            return SendResult(DeliveryStatus.TEMPORARY, None, "connection closed by the relay", "mail")
        return result

    # -- session ---------------------------------------------------------------------------------------

    def _connect_and_transact(
        self, sender: str, rcpt: str, needs_smtputf8: bool, message: bytes
    ) -> SendResult | None:
        if self._smtp is None:
            failure = self._connect()
            if failure is not None:
                return failure
        return self._transact(sender, rcpt, needs_smtputf8, message)

    def _connect(self) -> SendResult | None:
        config = self.config
        smtp: smtplib.SMTP | None = None
        stage = "connect"
        try:
            # Made without a host, so the constructor does not connect: while it waited for the greeting its
            # socket would be out of abort()'s reach.
            if config.implicit_tls:
                smtp = _Utf8AuthSMTPSSL(
                    local_hostname=config.helo_name, timeout=config.timeout, context=self._tls_context()
                )
            else:
                smtp = _Utf8AuthSMTP(local_hostname=config.helo_name, timeout=config.timeout)
            # smtplib checks the TLS certificate (smtps:// and STARTTLS alike) against this name, which only
            # its constructor sets.
            smtp._host = config.host  # type: ignore[attr-defined]
            self._opening = smtp
            if self._aborted:  # cut off already, or abort() ran before it could see this session
                raise smtplib.SMTPServerDisconnected("cut off on stop")
            code, reply = smtp.connect(config.host, config.port)
            if code != 220:  # as smtplib's constructor does
                raise smtplib.SMTPConnectError(code, reply)
            stage = "ehlo"
            smtp.ehlo_or_helo_if_needed()
            if config.starttls:
                stage = "starttls"
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()  # RFC 3207 §4.2: forget what was said before TLS, ask again
            if config.username:
                stage = "auth"
                smtp.login(config.username, config.password or "")
            self._smtp = smtp  # before it leaves _opening, so that abort() always finds it
        except smtplib.SMTPResponseException as error:
            # Includes a greeting other than 220 (SMTPConnectError) and a refused login.
            _close_quietly(smtp)
            return _session_failure(error.smtp_code, error.smtp_error, stage)
        except (smtplib.SMTPException, OSError) as error:
            # Refused, reset, timed out, TLS handshake failed, or an extension the relay does not offer.
            _close_quietly(smtp)
            return SendResult(DeliveryStatus.TEMPORARY, None, _describe_error(error), stage)
        finally:
            self._opening = None
        return None

    def _tls_context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    # -- transaction -----------------------------------------------------------------------------------

    def _transact(self, sender: str, rcpt: str, needs_smtputf8: bool, message: bytes) -> SendResult | None:
        """The transaction's result, or None when the connection was found closed at MAIL FROM."""
        smtp = self._smtp
        assert smtp is not None
        options: list[str] = []
        if needs_smtputf8:
            if not smtp.has_extn("smtputf8"):
                text = "the address has a non-ASCII local part and the relay does not offer SMTPUTF8"
                return SendResult(DeliveryStatus.PERMANENT, None, text, "envelope")
            options.append("SMTPUTF8")  # RFC 6531
        if smtp.has_extn("size"):
            # RFC 1870: a relay that cannot take a message this large refuses it at MAIL FROM, before it
            # is transmitted.
            options.append(f"SIZE={len(message)}")
        try:
            code, reply = smtp.mail(sender, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            return None
        if code == 421:
            self._drop()
            return None
        if code == 530:
            # RFC 4954 §6: "authentication required": the relay wants credentials we were not given.
            self._refused(code, reply, "auth")
            return SendResult(DeliveryStatus.TEMPORARY, code, _text(reply), "auth")
        if code != 250:
            return self._refused(code, reply, "mail")
        try:
            code, reply = smtp.rcpt(rcpt)
            if code not in (250, 251):
                return self._refused(code, reply, "rcpt")
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop()
            return SendResult(DeliveryStatus.TEMPORARY, None, _describe_error(error), "rcpt")
        try:
            code, reply = smtp.data(message)
        except smtplib.SMTPDataError as error:  # the DATA command itself was refused: nothing sent
            return self._refused(error.smtp_code, error.smtp_error, "data")
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop()
            # RFC 1047: the relay may have taken the message before the connection broke. Temporary, so
            # the outbox retries with the same Message-ID, by which receivers can deduplicate.
            text = f"{_describe_error(error)}; the relay may or may not have accepted the message"
            return SendResult(DeliveryStatus.TEMPORARY, None, text, "data")
        if code == 250:
            return SendResult(DeliveryStatus.DELIVERED, code, _text(reply), "data")
        return self._refused(code, reply, "data")

    def _refused(self, code: int, reply: bytes | str, stage: str) -> SendResult:
        result = SendResult(_classify(code), code, _text(reply), stage)
        if code == 421:
            self._drop()  # RFC 5321 §3.8: the server is closing the channel
            return result
        try:
            self._smtp_or_fail().rset()  # a refused transaction leaves the session usable once reset
        except (smtplib.SMTPException, OSError):
            self._drop()
        return result

    def _smtp_or_fail(self) -> smtplib.SMTP:
        if self._smtp is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        return self._smtp


def _envelope(envelope_from: str, recipient: str) -> tuple[str, str, bool] | SendResult:
    """Envelope addresses checked and ASCII-fied (IDNA domains); or a permanent failure to report."""
    converted: list[str] = []
    needs_smtputf8 = False
    for role, address in (("sender", envelope_from), ("recipient", recipient)):
        if role == "sender" and address == "":
            converted.append("")  # the null reverse-path, RFC 5321 §4.5.5
            continue
        local, at, domain = address.rpartition("@")
        if not (at and local and domain) or any(char in RESERVED_ENVELOPE_CHARS for char in address):
            return _bad_envelope(f"not a valid {role} address: {address!r}")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return _bad_envelope(f"not a valid domain in {address!r}")
        needs_smtputf8 = needs_smtputf8 or not local.isascii()
        converted.append(f"{local}@{domain}")
    return converted[0], converted[1], needs_smtputf8


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()  # closes the socket only; never raises


def _bad_envelope(text: str) -> SendResult:
    # Such an address can never be delivered; retrying would not change that.
    return SendResult(DeliveryStatus.PERMANENT, None, text, "envelope")


def _classify(code: int) -> DeliveryStatus:
    # RFC 5321 §4.2.1: 4yz transient, 5yz permanent. Anything else where a 2yz was due is unexpected;
    # treat it as transient so a human looks at it before the mail is given up.
    return DeliveryStatus.PERMANENT if 500 <= code <= 599 else DeliveryStatus.TEMPORARY


def _session_failure(code: int, reply: bytes | str, stage: str) -> SendResult:
    return SendResult(DeliveryStatus.TEMPORARY, code, _text(reply), stage)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _flag(value: str, name: str) -> bool:
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ValueError(f"{name}={value} is not 1 or 0")


def _timeout(value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"timeout={value} is not a number of seconds") from None
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # also refuses nan
        raise ValueError(
            f"timeout={value} is out of range: more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds"
        )
    return seconds


def _helo_name(value: str) -> str | None:
    """The EHLO name: a host name or an address literal, as RFC 5321 allows; empty: smtplib's default.

    Anything else is refused here, at start: smtplib refuses CR or LF in a command only when it sends
    it, which would fail every mail while `servicedesk check` called the relay usable."""
    if not value:
        return None
    is_host_name = len(value) <= MAX_HOST_NAME_CHARS and _HELO_HOST_NAME.fullmatch(value) is not None
    if is_host_name or _is_address_literal(value):
        return value
    raise ValueError(
        f"helo={value!r} is not a host name (letters, digits, dots, hyphens) "
        "or an address literal such as [192.0.2.1] or [IPv6:2001:db8::1]"
    )


def _is_address_literal(value: str) -> bool:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 4.1.3)."""
    if not (value.startswith("[") and value.endswith("]")):
        return False
    inside = value[1:-1]
    version, address = (6, inside[5:]) if inside[:5].lower() == "ipv6:" else (4, inside)
    if "%" in address:
        return False  # ipaddress takes any text after % as an IPv6 scope, even a line break
    try:
        return ipaddress.ip_address(address).version == version
    except ValueError:
        return False


def _redact(url: str) -> str:
    """The URL with any password hidden, for an error message: never echo a password into a log,
    even from a URL too broken to parse. In a malformed URL a password may hold any character ("/"
    and "@" not percent-encoded), so all from the first ":" after the scheme's "//" to the last "@"
    (no host name has one) is hidden: "smtp://desk:pa/ss@relay" shows as "smtp://desk:***@relay"."""
    url = url.strip()
    slashes = url.find("//")
    start = slashes + 2 if slashes >= 0 else 0
    at = url.rfind("@")
    colon = url.find(":", start, at)
    if at < start or colon < 0:
        return url  # no credentials, or a user name without a password
    return f"{url[:colon]}:***{url[at:]}"
