"""DATA read in large pieces answers and delivers exactly as aiosmtpd's line-by-line smtp_DATA.

Each byte stream goes, over a real socket, to a server running aiosmtpd's own smtp_DATA and to one
running ours, sent whole, byte by byte, in odd-sized pieces or cut inside every terminator-like
sequence (with tiny pauses, so the server reads it in those pieces): the reply lines and what the DATA
hook received must be the same. Three pairs: the intake's BoundedSMTP against the same class with
aiosmtpd's smtp_DATA; and aiosmtpd's bare SMTP (its 1001-octet line limit and its own replies, so a
too-long line's 500 and too much data's 552 stay apart) against the same with ours, once on bytes and
once decoding, with a size limit just over the line limit. Then the real intake, storing what it gets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from mail import intake
from mail.intake import COMMAND_LIMITS, SESSION_TIMEOUT_SECONDS, BoundedSMTP, IntakeHandler
from store.context import Desk
from store.db import Database
from tests.mail.intake_server import intake_desk, running_intake, stored_items

TIMEOUT = 10.0  # bounds a broken test; never an assertion about time
LIMIT = 6000  # the intake's max_message_bytes, and data_size_limit of the bare pair
# Just over aiosmtpd's line limit (1001): a line at that limit can tip a message over this one.
SMALL_LIMIT = 1500


# ---------------------------------------------------------------------------------------------------
# The servers


class Recorder:
    """What the DATA hook was handed, per connection (the client's address is the server's peer)."""

    def __init__(self) -> None:
        self.received: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)

    def record(self, session: Session, envelope: Envelope) -> None:
        entry = (envelope.mail_from, list(envelope.rcpt_tos), envelope.content, envelope.original_content)
        self.received[session.peer].append(entry)


class RecordingHandler(Recorder):
    """A handler for aiosmtpd's bare SMTP."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record(session, envelope)
        return "250 OK: recorded"


class RecordingIntakeHandler(IntakeHandler):
    """The intake's handler (its RCPT checks), recording DATA instead of storing it."""

    def __init__(self, db: Database, executor: ThreadPoolExecutor) -> None:
        super().__init__(db, "support@acme.test", LIMIT, executor)
        self.recorder = Recorder()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.recorder.record(session, envelope)
        return "250 2.0.0 OK: queued"


class AiosmtpdDATA(BoundedSMTP):
    """The intake's protocol class with aiosmtpd's own smtp_DATA: what ours must match."""

    smtp_DATA = SMTP.smtp_DATA


class PiecewiseSMTP(SMTP):
    """aiosmtpd's bare SMTP, reading DATA as BoundedSMTP does."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        with intake._reading_in_pieces(self):
            await super().smtp_DATA(arg)


@dataclass(frozen=True)
class Pair:
    size_limit: int  # data_size_limit of both servers
    line_limit: int  # line_length_limit of both
    reference: int  # ports
    ours: int
    reference_received: dict[Any, list[tuple[Any, ...]]]
    our_received: dict[Any, list[tuple[Any, ...]]]


@contextmanager
def serving(factory: Callable[[], asyncio.Protocol]) -> Iterator[int]:
    """Serve protocols made by `factory` on 127.0.0.1 from a thread with its own loop; yields the port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="smtp-parity", daemon=True)
    thread.start()
    made = asyncio.run_coroutine_threadsafe(loop.create_server(factory, "127.0.0.1", 0), loop)
    server = made.result(TIMEOUT)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(close(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    # RCPT to the bare support address looks nothing up: this database is never used.
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('unused') / 'unused.db'}")
    executor = ThreadPoolExecutor(max_workers=1)
    # As start_smtp_intake makes the intake's.
    intake_options: dict[str, Any] = {
        "hostname": "acme.test",
        "data_size_limit": LIMIT,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "timeout": SESSION_TIMEOUT_SECONDS,
        "command_call_limit": COMMAND_LIMITS,
        "ident": "servicedesk ESMTP",
    }
    bare_options: dict[str, Any] = {"hostname": "acme.test", "data_size_limit": LIMIT}
    decoded_options: dict[str, Any] = {**bare_options, "data_size_limit": SMALL_LIMIT, "decode_data": True}
    theirs_intake, ours_intake = RecordingIntakeHandler(db, executor), RecordingIntakeHandler(db, executor)
    theirs_bare, ours_bare = RecordingHandler(), RecordingHandler()
    theirs_decoded, ours_decoded = RecordingHandler(), RecordingHandler()
    with (
        serving(lambda: AiosmtpdDATA(theirs_intake, **intake_options)) as intake_theirs,
        serving(lambda: BoundedSMTP(ours_intake, **intake_options)) as intake_ours,
        serving(lambda: SMTP(theirs_bare, **bare_options)) as bare_theirs,
        serving(lambda: PiecewiseSMTP(ours_bare, **bare_options)) as bare_ours,
        serving(lambda: SMTP(theirs_decoded, **decoded_options)) as decoded_theirs,
        serving(lambda: PiecewiseSMTP(ours_decoded, **decoded_options)) as decoded_ours,
    ):
        yield {
            "intake": Pair(
                LIMIT,
                LIMIT + 2,
                intake_theirs,
                intake_ours,
                theirs_intake.recorder.received,
                ours_intake.recorder.received,
            ),
            "bare": Pair(
                LIMIT,
                SMTP.line_length_limit,
                bare_theirs,
                bare_ours,
                theirs_bare.received,
                ours_bare.received,
            ),
            "decoded": Pair(
                SMALL_LIMIT,
                SMTP.line_length_limit,
                decoded_theirs,
                decoded_ours,
                theirs_decoded.received,
                ours_decoded.received,
            ),
        }
    executor.shutdown()
    db.dispose()


# ---------------------------------------------------------------------------------------------------
# The streams

HELLO = b"EHLO client.example\r\n"
QUIT = b"QUIT\r\n"


def mail(body: bytes) -> bytes:
    """One transaction; `body` is the message as sent (dot-stuffed), ending in CRLF or empty."""
    return b"MAIL FROM:<bob@customer.test>\r\nRCPT TO:<support@acme.test>\r\nDATA\r\n" + body + b".\r\n"


def sized(size: int, start: bytes = b"") -> bytes:
    """A message body of exactly `size` bytes as sent: `start`, then lines of 78 bytes and one shorter."""
    body = start
    while size - len(body) > 80:
        body += b"y" * 76 + b"\r\n"
    return body + b"z" * (size - len(body) - 2) + b"\r\n"


def realistic() -> bytes:
    """About 5 KB: headers, text whose lines end in "." and start with one, a base64 attachment."""
    text = b"".join(b"Line %d of the text ends with a full stop.\r\n" % n for n in range(12))
    payload = bytes(range(256)) * 12
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: Bob <bob@customer.test>\r\nTo: support@acme.test\r\nSubject: Printer on fire.\r\n"
        b"Message-ID: <m1@customer.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\n" + text + b"..leading dot\r\n...\r\n..\r\n.x.\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"--b--\r\n"
    )


def line_of(length: int) -> bytes:
    """A body of one line, `length` bytes with its CRLF."""
    return b"w" * (length - 2) + b"\r\n"


def ending_in_dots(size: int, line: int) -> bytes:
    """`size` bytes of lines, then a line of `line` bytes: each part ends with ".\\r\\n"."""
    return sized(size - 6) + b"end.\r\n" + b"w" * (line - 3) + b".\r\n"


# The streams the client sends after EHLO (then QUIT), made for the pair's limits.
CASES: dict[str, Callable[[Pair], bytes]] = {
    "empty message": lambda _: mail(b""),
    "one empty line": lambda _: mail(b"\r\n"),
    "a line that is just ..": lambda _: mail(b"..\r\n"),
    "lines starting with . and ..": lambda _: mail(
        b".first\r\nplain\r\n..second\r\n...third\r\n. sp\r\n..\r\n"
    ),
    "dots ending lines": lambda _: mail(b"Subject: x\r\n\r\na.\r\nend.\r\n.a\r\nx.\r\n\r\n..\r\nlast.\r\n"),
    # Each of these lines is a readuntil(b".\r\n") of its own; together longer than aiosmtpd's line limit.
    "many lines ending in a dot": lambda _: mail(
        b"".join(b"Sentence %d of the text ends here.\r\n" % n for n in range(60))
    ),
    "bare LF and CR around dots": lambda _: mail(
        b"Subject: bare\n\nline one\n.\nline two\n.\r\nthree\r.\r\n\n.\n\r\nend\n\r\n"
    ),
    "8-bit bytes": lambda _: mail(b"Subject: caf\xc3\xa9\r\n\r\n\xff\xfe\x00\x80\xc3\x28 bytes\r\n"),
    "two messages": lambda _: (
        mail(b"Subject: one\r\n\r\nfirst\r\n") + mail(b"Subject: two\r\n\r\n.second\r\n")
    ),
    "realistic 5 KB mail": lambda _: mail(realistic()),
    "exactly the limit, one over, then a small one": lambda p: (
        mail(sized(p.size_limit, b"..a\r\n")) + mail(sized(p.size_limit + 1)) + mail(b"after\r\n")
    ),
    "over the limit only with its stuffed dots, then a small one": lambda p: (
        mail(sized(p.size_limit + 1, b"..a\r\n" * 5)) + mail(b"after\r\n")
    ),
    "twice the limit in short lines, then a small one": lambda p: (
        mail(sized(2 * p.size_limit)) + mail(b"after\r\n")
    ),
    "one huge line, then a small one": lambda p: mail(line_of(3 * p.size_limit)) + mail(b"after\r\n"),
    "lines around the line limit": lambda p: b"".join(
        mail(line_of(p.line_limit + k)) for k in (-1, 0, 1, 2, 3, 4)
    ),
    "too much, then a too-long line": lambda p: mail(sized(p.size_limit + 10) + line_of(2 * p.line_limit)),
    "a too-long line, then too much": lambda p: mail(line_of(p.line_limit + 5) + sized(p.size_limit + 10)),
    # A line of the reader's limit + 3 ending in "." comes whole from one readuntil(b".\r\n"): it must
    # still be the reader's LimitOverrunError (500 Line too long), though it also tips the message over.
    "a line just over the reader's limit ending in a dot": lambda p: (
        mail(ending_in_dots(p.size_limit // 2, p.line_limit + 3)) + mail(b"after\r\n")
    ),
    "HELP, HELP DATA": lambda _: b"HELP\r\nHELP DATA\r\n" + mail(b"x\r\n"),
    "DATA refused: before RCPT, with an argument": lambda _: (
        b"MAIL FROM:<bob@customer.test>\r\nDATA\r\nRCPT TO:<support@acme.test>\r\n"
        b"DATA now\r\nDATA\r\nok\r\n.\r\n"
    ),
}
# Streams the client ends (shutting its side down) in the middle of DATA: nothing may be delivered.
HANG_UPS: dict[str, bytes] = {
    "right after DATA": mail(b"")[:-3],
    "mid-line": mail(b"Subject: x\r\n\r\nhalf a li"),
    "after CRLF .": mail(b"Subject: x\r\n\r\nbody\r\n")[:-2],
    "after CRLF . CR": mail(b"Subject: x\r\n\r\nbody\r\n")[:-1],
    "after one whole message": mail(b"whole\r\n") + mail(b"Subject: x\r\n\r\nbody\r\n")[:-3],
    "in a too-big message": mail(sized(2 * LIMIT))[:-3],
}


def cuts(stream: bytes, mode: str) -> list[int]:
    """Where the client's sends split `stream`."""
    if mode == "whole":
        return []
    if mode == "odd":
        sizes, at, points = (1, 2, 3, 7, 13, 64, 5, 1, 400, 2), 0, []
        while (at := at + sizes[len(points) % len(sizes)]) < len(stream):
            points.append(at)
        return points
    # Inside every ".\r\n" and the CRLF before it; "bytewise" sends short streams a byte at a time.
    if mode == "bytewise" and len(stream) <= 1500:
        return list(range(1, len(stream)))
    points = set(range(997, len(stream), 997))
    at = stream.find(b".\r\n")
    while at != -1:
        points.update(range(max(at - 2, 1), min(at + 3, len(stream))))
        at = stream.find(b".\r\n", at + 1)
    return sorted(points)


def converse(port: int, stream: bytes, mode: str, hang_up: bool = False) -> tuple[list[bytes], Any]:
    """Sends HELLO + `stream` (+ QUIT unless hanging up) as `mode` says; the reply lines, and the peer."""
    stream = HELLO + stream + (b"" if hang_up else QUIT)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = 0
        for end in [*cuts(stream, mode), len(stream)]:
            sock.sendall(stream[start:end])
            start = end
            if mode != "whole":
                time.sleep(0.0002)  # lets the server read this piece on its own
        if hang_up:
            sock.shutdown(socket.SHUT_WR)
        replies = b""
        while chunk := sock.recv(65536):
            replies += chunk
        return replies.split(b"\r\n"), sock.getsockname()


def both(pair: Pair, stream: bytes, mode: str, hang_up: bool = False) -> tuple[Any, Any]:
    """(replies, deliveries) from aiosmtpd's smtp_DATA and from ours."""
    theirs, their_peer = converse(pair.reference, stream, mode, hang_up)
    ours, our_peer = converse(pair.ours, stream, mode, hang_up)
    return (theirs, pair.reference_received.pop(their_peer, [])), (ours, pair.our_received.pop(our_peer, []))


MODES = ["whole", "bytewise", "odd", "split"]


# ---------------------------------------------------------------------------------------------------
# Parity


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("pair_name", ["intake", "bare", "decoded"])
def test_replies_and_content_are_aiosmtpds(
    pairs: dict[str, Pair], pair_name: str, case: str, mode: str
) -> None:
    pair = pairs[pair_name]
    theirs, ours = both(pair, CASES[case](pair), mode)
    assert ours == theirs
    assert ours[0][-2] == b"221 Bye"  # the session went on to the end


@pytest.mark.parametrize("mode", ["whole", "split"])
@pytest.mark.parametrize("case", HANG_UPS)
@pytest.mark.parametrize("pair_name", ["intake", "bare"])
def test_a_client_hanging_up_mid_data_delivers_nothing(
    pairs: dict[str, Pair], pair_name: str, case: str, mode: str
) -> None:
    theirs, ours = both(pairs[pair_name], HANG_UPS[case], mode, hang_up=True)
    assert ours == theirs
    replies, delivered = ours
    assert replies[-2].startswith(b"354")
    assert [original for *_, original in delivered] == (
        [b"whole\r\n"] if case == "after one whole message" else []
    )


def data_replies(replies: list[bytes]) -> list[bytes]:
    """The answers to the end of each message (what follows each 354)."""
    return [replies[at + 1] for at, reply in enumerate(replies) if reply.startswith(b"354")]


def test_the_cases_are_what_they_say(pairs: dict[str, Pair]) -> None:
    """Parity alone would pass if no case reached what it names: a few outcomes, checked outright."""
    intake_pair, bare, decoded = pairs["intake"], pairs["bare"], pairs["decoded"]

    def ours(pair: Pair, case: str) -> tuple[list[bytes], list[bytes]]:
        (_, _), (replies, delivered) = both(pair, CASES[case](pair), "whole")
        return data_replies(replies), [original for *_, original in delivered]

    assert ours(intake_pair, "empty message") == ([b"250 2.0.0 OK: queued"], [b""])
    assert ours(intake_pair, "a line that is just ..")[1] == [b".\r\n"]
    assert ours(intake_pair, "lines starting with . and ..")[1] == [
        b"first\r\nplain\r\n.second\r\n..third\r\n sp\r\n.\r\n"
    ]
    too_big = b"552 5.3.4 Message too big"
    replies, delivered = ours(intake_pair, "exactly the limit, one over, then a small one")
    assert replies == [b"250 2.0.0 OK: queued", too_big, b"250 2.0.0 OK: queued"]
    assert [len(content) for content in delivered] == [LIMIT - 1, len(b"after\r\n")]
    assert ours(intake_pair, "over the limit only with its stuffed dots, then a small one")[0][0] == too_big
    assert ours(intake_pair, "one huge line, then a small one")[0] == [too_big, b"250 2.0.0 OK: queued"]
    # aiosmtpd's own replies tell a line over its reader's limit from too much data.
    assert ours(bare, "one huge line, then a small one")[0] == [
        b"500 Line too long (see RFC5321 4.5.3.1.6)",
        b"250 OK: recorded",
    ]
    assert ours(bare, "too much, then a too-long line")[0] == [b"552 Error: Too much mail data"]
    assert ours(bare, "a too-long line, then too much")[0] == [b"500 Line too long (see RFC5321 4.5.3.1.6)"]
    # 1001 bytes with the CRLF are a line within it; past that, whether the reader's limit or the
    # loop's own check finds it, too long.
    assert (
        ours(bare, "lines around the line limit")[0]
        == [b"250 OK: recorded"] * 2 + [b"500 Line too long (see RFC5321 4.5.3.1.6)"] * 4
    )
    assert ours(decoded, "a line just over the reader's limit ending in a dot")[0] == [
        b"500 Line too long (see RFC5321 4.5.3.1.6)",
        b"250 OK: recorded",
    ]
    assert ours(decoded, "8-bit bytes")[0] == [b"500 Error: strict ASCII mode"]


def test_aiosmtpds_loop_gets_a_mail_in_a_few_pieces(
    pairs: dict[str, Pair], caplog: pytest.LogCaptureFixture
) -> None:
    """What it is for. aiosmtpd's DATA loop logs each line it reads: once per line with its own
    reading, once per piece with ours (a piece starts at each line starting with a dot)."""
    pair, message = pairs["intake"], realistic()

    def lines_read(port: int) -> int:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mail.log"):
            converse(port, mail(message), "odd")
        return sum(record.msg == "DATA readline: %s" for record in caplog.records)

    assert lines_read(pair.reference) == message.count(b"\r\n") + 1  # and the terminator
    assert lines_read(pair.ours) == message.count(b"\r\n.") + 2


def test_a_message_longer_than_a_line_may_be_is_not_all_read_in_pieces() -> None:
    """Past line_length_limit the rest is left in the connection's reader, for aiosmtpd's own loop:
    a message it will refuse is not gathered into memory first."""
    message = b"x.\r\n" * 1000

    async def read_all() -> tuple[int, bytes, bytes]:
        reader = asyncio.StreamReader(limit=100)
        reader.feed_data(message + b".\r\nQUIT\r\n")
        pieces = intake._MessageReader(reader, 100)
        handed = [await pieces.readuntil(b"\r\n")]
        queued = sum(map(len, pieces._pieces))
        while handed[-1] != b".\r\n":
            handed.append(await pieces.readuntil(b"\r\n"))
        return queued, b"".join(handed), await reader.readuntil(b"\r\n")

    queued, handed, next_command = asyncio.run(read_all())
    assert queued <= 2 * 100 + 3  # up to the limit, then one more readuntil's worth
    assert handed == message + b".\r\n" and next_command == b"QUIT\r\n"


# ---------------------------------------------------------------------------------------------------
# The real intake


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return intake_desk(db, tmp_path, max_message_bytes=LIMIT)


def test_the_intake_stores_the_unstuffed_message_and_stays_in_step(desk: Desk) -> None:
    message = b"Message-ID: <dots@customer.test>\r\n\r\n.\r\n..\r\n.leading\r\nend.\r\n\xc3\xa9\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    with running_intake(desk) as port:
        replies, _ = converse(port, mail(sized(2 * LIMIT)) + mail(stuffed), "split")
    assert data_replies(replies) == [b"552 5.3.4 Message too big", b"250 2.0.0 OK: queued"]
    [item] = stored_items(desk.db)
    assert item.raw == message


def test_the_intake_stores_nothing_from_a_client_that_hangs_up_mid_data(desk: Desk) -> None:
    with running_intake(desk) as port:
        cut = mail(b"Message-ID: <cut@customer.test>\r\n\r\nbody\r\n")[:-1]
        replies, _ = converse(port, cut, "odd", hang_up=True)
        assert replies[-2].startswith(b"354")
        replies, _ = converse(port, mail(b"Message-ID: <next@customer.test>\r\n\r\nbody\r\n"), "whole")
    assert data_replies(replies) == [b"250 2.0.0 OK: queued"]
    assert [item.dedupe_key for item in stored_items(desk.db)] == ["email:next@customer.test"]
