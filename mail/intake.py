"""SMTP intake (aiosmtpd): refuse bad recipients early, answer 250 only once the mail is stored.

The DATA handler stores the raw message in the intake queue (one short transaction, shared with
the mails that end at the same moment (mail/intake_commit.py), on the intake's own threads: a 250
never waits for a thread the worker holds) and the worker turns it
into a ticket; a second delivery of a stored Message-ID is answered 250 and
changes nothing. If the store is unavailable the answer is 451, so the sending server retries
(RFC 5321 4.2.5): nothing accepted is ever lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr, TypeVar, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from mail.addresses import split_support_address
from mail.intake_commit import GroupCommit
from mail.parse import header_message_id
from store import inbound
from store.context import Desk
from store.db import Database, StoreUnavailable
from store.inbound import Arrival
from store.intake_keys import KeyKind, lookup_address_key

log = logging.getLogger(__name__)
T = TypeVar("T")

EMAIL = "email"
# RFC 5321 4.5.3.1.8: servers must take at least 100 recipients. Each one past that gets 452, which
# 4.5.3.1.10 defines as "deliver these in a later transaction". Only our own addresses are accepted at
# all, so a real mail never comes near it.
MAX_RECIPIENTS = 100
MAX_SESSIONS = 200
# Sessions one client (one peer address) may hold at once: past it, that client gets 421 and the
# others are still served. Without it one host (a spammer, a broken MTA looping) could hold every
# session, and all other mail waited for its senders' retries. Postfix's default
# (smtpd_client_connection_count_limit) is half its process limit; a real MTA opens a few.
MAX_SESSIONS_PER_CLIENT = 50
# Commands per session (aiosmtpd answers 421 past them and hangs up): room for an MTA delivering a long
# queue over one connection, none for a client looping on cheap commands or guessing keys at RCPT.
COMMAND_LIMITS = {"MAIL": 1000, "RCPT": 2000, "DATA": 1000, "RSET": 1000, "*": 50}
SESSION_TIMEOUT_SECONDS = 120
# While a message arrives the session is not idle: aiosmtpd's timer runs from the DATA command, so a
# large mail over a slow line was cut off every time it was sent. A message that still arrives at this
# rate keeps its session; one trickling slower (a client holding a session open) is cut off as an idle
# one is. Postfix's smtpd_min_data_rate is the same idea, with the same default.
MIN_DATA_BYTES_PER_SECOND = 500
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
# How long a stop lets a mail being sent finish (its DATA read, committed and answered 250): half
# the 8 s the whole service has to stop (`bot/service.py`).
STOP_GRACE_SECONDS = 4.0
NO_SUCH_RECIPIENT = "550 5.1.1 No such recipient here"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big"
# The intake's own threads for its store calls (the accept, the RCPT key lookup). asyncio's
# default executor is shared with the worker, whose transactions can hold all of it. Accepts run
# one batch at a time (GroupCommit), so the others serve RCPT's key lookups.
INTAKE_THREADS = 3


class IntakeHandler:
    """aiosmtpd hooks: only what this intake needs (RCPT checks, DATA storage)."""

    def __init__(
        self, db: Database, support_address: str, max_message_bytes: int, executor: ThreadPoolExecutor
    ) -> None:
        self.db = db
        self.support_address = support_address
        self.max_message_bytes = max_message_bytes
        self.executor = executor
        self.live: set[BoundedSMTP] = set()
        # Live sessions per peer address (MAX_SESSIONS_PER_CLIENT); an address with none is removed.
        self.per_client: dict[str, int] = {}
        # Set by `SmtpIntake.close`: the last session to end wakes it.
        self.stopping = False
        self.all_ended = asyncio.Event()
        self.store_down = False
        self.commits = GroupCommit(lambda arrivals: self._in_thread(inbound.accept_all, db, arrivals))

    def __dir__(self) -> list[str]:
        # aiosmtpd scans the handler's dir() on every connection too: see BoundedSMTP.__dir__.
        return list(_table_names(type(self)))

    async def _in_thread(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """asyncio.to_thread, on the intake's own executor."""
        context = contextvars.copy_context()
        bound = functools.partial(context.run, call, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, bound)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        verdict = await self._recipient_verdict(address)
        if verdict is not None:
            return verdict
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def _recipient_verdict(self, address: str) -> str | None:
        """None when we accept mail for `address`; else the SMTP reply refusing it."""
        ours, plus_part = split_support_address(address, self.support_address)
        if not ours:
            # Never an open relay: only the support address and its +key forms.
            return NO_SUCH_RECIPIENT
        if plus_part is None:
            return None
        try:
            kind = await self._in_thread(lookup_address_key, self.db, plus_part)
        except StoreUnavailable:
            return TEMPORARY_FAILURE
        if kind is KeyKind.UNKNOWN:
            # A guessed or forged reply key selects nothing (and says nothing about others).
            return NO_SUCH_RECIPIENT
        return None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or (
            envelope.content if isinstance(envelope.content, bytes) else str(envelope.content or "").encode()
        )
        if len(raw) > self.max_message_bytes:
            return MESSAGE_TOO_BIG
        message_id = header_message_id(raw)
        # "" is the null reverse-path of bounces and auto-replies (RFC 5321 4.5.5).
        mail_from = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        payload: dict[str, Any] = {
            "mail_from": mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer),
        }
        arrival = Arrival(EMAIL, f"email:{message_id}", payload=payload, raw=raw, lane=sender_lane(mail_from))
        try:
            stored = await self.commits.accept(arrival)
        except StoreUnavailable as exc:
            self._report_outage(exc)
            return TEMPORARY_FAILURE
        self._report_recovery()
        if not stored:
            log.info("duplicate delivery of %s ignored", message_id)
        return "250 2.0.0 OK: queued"

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's edge for anything unexpected: the sender keeps the mail and retries (451)."""
        log.exception("SMTP session failed", exc_info=error)
        return TEMPORARY_FAILURE

    def _report_outage(self, exc: StoreUnavailable) -> None:
        # An outage is logged once, not once per message (as Mailman does).
        if not self.store_down:
            log.error("mail refused with 451 while the store is unavailable: %s", exc)
            self.store_down = True

    def _report_recovery(self) -> None:
        if self.store_down:
            log.info("store reachable again; mail is accepted")
            self.store_down = False


def sender_lane(mail_from: str) -> str:
    """One lane per envelope sender: a customer's mails are turned into tickets in the order they came,
    so a quick follow-up finds the ticket its first mail opened instead of racing it to open another."""
    return "email:" + hashlib.sha256(mail_from.strip().lower().encode()).hexdigest()[:32]


# A path the email package's parser would return unchanged: <dot-atom@host.name>, ASCII only
# (RFC 5322 3.2.3 atext). Anything else (quoted local parts, source routes, comments, address
# literals, UTF-8) goes through that parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<(({_ATEXT}(?:\.{_ATEXT})*)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")

# The attribute names aiosmtpd builds its per-connection tables from (commands, AUTH mechanisms,
# handler hooks), listed once per class; see BoundedSMTP.__dir__.
_TABLE_PREFIXES = ("smtp_", "auth_", "handle_")
_TABLE_NAMES: dict[type, tuple[str, ...]] = {}


def _table_names(cls: type) -> tuple[str, ...]:
    names = _TABLE_NAMES.get(cls)
    if names is None:
        names = _TABLE_NAMES[cls] = tuple(name for name in dir(cls) if name.startswith(_TABLE_PREFIXES))
    return names


class _MessageReader:
    """What aiosmtpd's smtp_DATA reads a message through, in place of the connection's StreamReader.

    Its loop takes the message a line at a time: a readuntil, a log call and some bookkeeping per line,
    hundreds of them for a mail of a few KB, one of the intake's largest CPU costs. Yet a piece of
    whole lines gets from it what each of its lines would: its bytes are counted against
    data_size_limit (the count goes over at the piece holding the line it would go over at), its
    length is checked against line_length_limit (no line is longer than the piece), a leading "." is
    dropped (so a piece starts at each line that starts with one) and a line of just a dot ends the
    message. So a message of at most line_length_limit bytes, every mail the intake accepts (see
    BoundedSMTP.__init__), is read in large pieces and handed over in a few. A longer one is handed
    over line by line and its rest left in the connection's reader: aiosmtpd's own way, for mail it
    refuses. (The loop calls only readuntil, for CRLF, and after a LimitOverrunError read(n): the
    parity tests in tests/mail/test_intake_data.py hold this to aiosmtpd's answers and content.)
    """

    def __init__(self, reader: asyncio.StreamReader, line_limit: int) -> None:
        self._reader = reader
        # aiosmtpd sizes the connection's reader from line_length_limit too: a line longer than that
        # and its CRLF raises LimitOverrunError there.
        self._line_limit = line_limit
        self._pieces: deque[bytes] = deque()  # as read, and not all handed over yet
        self._at = 0  # where in the first of them what is handed over next starts
        self._by_line = False  # handed over a line at a time, else up to each line starting with "."
        self._started = False

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        assert separator == b"\r\n", "aiosmtpd's DATA loop reads lines ending in CRLF"
        if not self._started:
            self._started = True
            await self._read_message()
        if not self._pieces:
            return await self._reader.readuntil(separator)
        first = self._pieces[0]
        if self._by_line:
            end = first.index(b"\r\n", self._at) + 2
            if end - 2 - self._at > self._line_limit:
                # The connection's reader raises this for such a line and the loop then read()s all of
                # it but its CRLF: so here, for the loop's "Line too long" even where the line also
                # takes the message over its size.
                raise asyncio.LimitOverrunError("line longer than the limit", end - 2 - self._at)
        else:
            # Up to the next line that starts with a dot (the terminator is one), or all of it.
            found = first.find(b"\r\n.", self._at)
            end = len(first) if found == -1 else found + 2
        return self._take(end)

    async def read(self, n: int = -1) -> bytes:
        if not self._pieces:
            return await self._reader.read(n)
        return self._take(self._at + n)  # after the LimitOverrunError above

    def _take(self, end: int) -> bytes:
        """The first piece read, from where the last taken ended up to `end`."""
        first, start = self._pieces[0], self._at
        if end < len(first):
            self._at = end
        else:
            self._pieces.popleft()
            self._at = 0
        return first[start:end]

    async def _read_message(self) -> None:
        """Reads the message to its end in large pieces while it is short enough, and queues it."""
        pieces: list[bytes] = []
        size = 0
        while size <= self._line_limit:
            try:
                # Each piece ends with ".\r\n", so the next starts a line (as the first does): the
                # terminator is a piece of its own or ends one after a CRLF. readuntil waits for a
                # separator split across TCP segments, and never reads past it.
                piece = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError:
                break  # more than a line's limit without a ".\r\n": left in the reader, for the loop
            pieces.append(piece)
            size += len(piece)
            if piece == b".\r\n" or piece.endswith(b"\r\n.\r\n"):
                size -= 3  # the terminator is not content
                break
        # All that was read is whole lines. Short enough, it is handed over in as few pieces as can
        # be: none is longer than a line may be, so the loop's checks of a piece are its checks of
        # each line in it. Else a line at a time, as the reader gives them.
        self._by_line = size > self._line_limit
        if self._by_line:
            self._pieces.extend(pieces)
        elif pieces:
            self._pieces.append(pieces[0] if len(pieces) == 1 else b"".join(pieces))


@contextmanager
def _reading_in_pieces(smtp: SMTP) -> Iterator[None]:
    """aiosmtpd's smtp_DATA, run inside this, reads the message through a _MessageReader."""
    reader = smtp._reader
    smtp._reader = _MessageReader(reader, smtp.line_length_limit)  # type: ignore[assignment]
    try:
        yield
    finally:
        smtp._reader = reader


class BoundedSMTP(SMTP):
    """Refuses connections past MAX_SESSIONS with a 421, as RFC 5321 4.3.2 allows.

    Also trims three of aiosmtpd's per-connection or per-mail costs, which its bare form pays on every
    mail: see __dir__, _getaddr and smtp_DATA.
    """

    def __init__(self, handler: IntakeHandler, **kwargs: Any) -> None:
        # RFC 5321 4.5.3.1.6 caps lines at 1000 octets, but real mailers send longer ones (HTML on one
        # line) and the design accepts any content: a line is bounded only by the message size. Set
        # before SMTP.__init__, which sizes its stream reader from it.
        self.line_length_limit = handler.max_message_bytes + 2
        super().__init__(handler, **kwargs)
        self._intake = handler
        self._counted = False
        self._client = ""  # the peer address, once counted
        # In DATA: reading a mail, storing it or answering it. A stop lets it finish.
        self.sending_mail = False
        # Bytes received since the session timer was last set (see _timeout_cb).
        self._arrived = 0

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd answers 500 for a line longer than its reader's limit; ours is the message size
        # limit, so such a line means the message is too big, which RFC 1870 answers with 552. Its own
        # 552s carry no enhanced status code (RFC 3463): ours does.
        if isinstance(status, str) and status.startswith(("500 Line too long", "552 Error")):
            status = MESSAGE_TOO_BIG
        await super().push(status)

    def data_received(self, data: bytes) -> None:
        self._arrived += len(data)
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        self._arrived = 0
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        """aiosmtpd's idle timeout, except for a message still arriving at MIN_DATA_BYTES_PER_SECOND:
        its timer is set again, for another timeout's worth of it."""
        if self.sending_mail and self._arrived >= MIN_DATA_BYTES_PER_SECOND * self._timeout_duration:
            self._reset_timeout()
            return
        super()._timeout_cb()

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ builds its command and AUTH tables by scanning dir() of every new
        # connection (inspect.getmembers reads each of some 200 attributes): 0.15 ms, a tenth of
        # the service's CPU per mail under load. The tables only take names with these prefixes,
        # which are fixed per class, so dir() lists just those, found once per class.
        return list(_table_names(type(self)))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own address parse for MAIL FROM and RCPT TO, with the same answers: a plain
        `<local@domain>` is read by a pattern, anything else by the same parser, minus the
        typing.Protocol class aiosmtpd defines on every call (40 % of that parse's CPU)."""
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.match(arg)
        # The parser also skips the blanks after the path, and comments, which are left to it.
        rest = arg[plain.end() :].lstrip(" \t") if plain is not None else ""
        if plain is not None and not rest.startswith("("):
            # What nearly every MTA sends: the parser's answer for it, at a hundredth of its cost.
            if self.local_part_limit and len(plain[2]) > self.local_part_limit:
                return None, None
            return plain[1], rest
        try:
            parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
            address, rest = parse(arg)
        except HeaderParseError:
            return None, None
        addr: str = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    @syntax("DATA")  # aiosmtpd's help text for it, without which HELP would not list DATA
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's own, all of it: its checks and replies, the size accounting, the dot-unstuffing,
        # the DATA hook and the state reset. Only the message is read in large pieces, not by lines.
        self.sending_mail = True
        try:
            with _reading_in_pieces(self):
                await super().smtp_DATA(arg)
        finally:
            self.sending_mail = False
        if self._intake.stopping:
            self.say_goodbye()  # the mail is answered; the next one goes to another server, or later

    def say_goodbye(self) -> None:
        """RFC 5321 3.8: a server shutting down answers 421 and closes the connection."""
        transport = self.socket_transport()
        if transport is not None and not transport.is_closing():
            transport.write(SHUTTING_DOWN)
            transport.close()

    def hang_up(self) -> None:
        """Close the connection now, without an answer or waiting for what is still being sent."""
        transport = self.socket_transport()
        if transport is not None:
            transport.abort()

    def socket_transport(self) -> asyncio.Transport | None:
        # aiosmtpd declares its transport as the base class, which can neither write nor abort.
        return cast("asyncio.Transport | None", self.transport)

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        intake = self._intake
        if intake.stopping:
            refusal: bytes | None = SHUTTING_DOWN  # accepted just before the listener closed
        elif len(intake.live) >= MAX_SESSIONS:
            refusal = b"421 4.7.0 Too many connections, try again later\r\n"
        elif intake.per_client.get(client, 0) >= MAX_SESSIONS_PER_CLIENT:
            refusal = b"421 4.7.0 Too many connections from your host, try again later\r\n"
        else:
            refusal = None
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        intake.live.add(self)
        intake.per_client[client] = intake.per_client.get(client, 0) + 1
        self._client = client
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._counted:
            return  # refused in connection_made: aiosmtpd never started a session to end
        intake = self._intake
        intake.live.discard(self)
        left = intake.per_client.get(self._client, 1) - 1
        if left > 0:
            intake.per_client[self._client] = left
        else:
            intake.per_client.pop(self._client, None)
        self._counted = False
        if self._intake.stopping and not self._intake.live:
            self._intake.all_ended.set()
        super().connection_lost(exc)


@dataclass
class SmtpIntake:
    server: asyncio.Server
    port: int
    executor: ThreadPoolExecutor

    handler: IntakeHandler

    async def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop listening and end every session: one between mails is answered 421 at once, one
        sending a mail finishes it first (stored and answered 250, then 421). One still sending
        after `grace` is cut off without an answer, so its sender keeps the mail and retries; if
        the mail was being stored just then, the retry is found by its key and stored once. The
        accepts already running commit before the threads go."""
        handler = self.handler
        handler.stopping = True
        self.server.close()
        for session in list(handler.live):
            if not session.sending_mail:
                session.say_goodbye()
        if handler.live:
            with suppress(TimeoutError):
                await asyncio.wait_for(handler.all_ended.wait(), grace)
        for session in list(handler.live):
            session.hang_up()
        await self.server.wait_closed()
        await handler.commits.idle()
        await asyncio.to_thread(self.executor.shutdown, wait=True)


async def start_smtp_intake(desk: Desk, *, host: str | None = None, port: int | None = None) -> SmtpIntake:
    """Listen on the running loop; `close()` the result to stop."""
    settings = desk.settings
    executor = ThreadPoolExecutor(max_workers=INTAKE_THREADS, thread_name_prefix="smtp-intake")
    handler = IntakeHandler(desk.db, settings.support_address, settings.max_message_bytes, executor)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BoundedSMTP(
            handler,
            hostname=settings.support_domain,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=SESSION_TIMEOUT_SECONDS,
            command_call_limit=COMMAND_LIMITS,
            ident="servicedesk ESMTP",
        ),
        host=host or settings.smtp_host,
        port=settings.smtp_port if port is None else port,
    )
    return SmtpIntake(server, int(server.sockets[0].getsockname()[1]), executor, handler)
