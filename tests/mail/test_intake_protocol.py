"""The intake's SMTP protocol class answers exactly as aiosmtpd's own, with its per-mail costs trimmed.

BoundedSMTP narrows dir() to the names aiosmtpd builds its command tables from and parses MAIL FROM /
RCPT TO addresses without aiosmtpd's per-call class: both are checked against aiosmtpd's SMTP itself,
and through a real SMTP dialogue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from mail.intake import COMMAND_LIMITS, BoundedSMTP, IntakeHandler
from store.context import Desk
from store.db import Database
from tests.mail.intake_server import client, intake_desk, running_intake

ADDRESS_ARGUMENTS = [
    "",
    "<>",
    "<bob@customer.test>",
    "bob@customer.test",
    "<bob@customer.test> SIZE=4000 BODY=8BITMIME",
    "bob@customer.test SIZE=4000",
    "  <bob@customer.test>",
    '<"odd local"@customer.test>',
    "<@relay.test:bob@customer.test>",
    "<bob.o'neil+tag@sub.customer.test>",
    "<bob@[192.0.2.1]>",
    "<jürgen@bücher.test> SMTPUTF8",
    "<" + "l" * 65 + "@customer.test>",
    "<bob@customer.test",
    "bob",
    "<bob@>",
    "<@customer.test>",
    "<a b@customer.test>",
    "(comment) <bob@customer.test>",
    "<bob@customer.test>>",
    "\u0000<bob@customer.test>",
]


# Plain paths (the pattern's side) next to near-misses (the parser's side), with what may follow.
LOCAL_PARTS = ["bob", "Bob.Smith", "o'neil+tag", "a!#$%&*/=?^_`{|}~-z", "a..b", ".bob", "bob.", "a b", "ü"]
DOMAINS = ["customer.test", "X-Y.test", "c", "-c.test", "c..test", "c.test.", "[192.0.2.1]", "bücher.test"]
SUFFIXES = ["", " SIZE=4000", "  BODY=8BITMIME SMTPUTF8", ">", "x", " ", "\tSIZE=1", " (c) SIZE=1", "(c)"]
GENERATED = [
    f"<{local}@{domain}>{suffix}" for local in LOCAL_PARTS for domain in DOMAINS for suffix in SUFFIXES
]


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return intake_desk(db, tmp_path)


@pytest.fixture
def protocols(desk: Desk) -> Iterator[tuple[SMTP, BoundedSMTP]]:
    """aiosmtpd's SMTP and ours, made the way the intake makes them, for the same handler."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    handler = IntakeHandler(desk.db, "support@acme.test", 200_000, executor)
    options: dict[str, Any] = {"hostname": "acme.test", "command_call_limit": COMMAND_LIMITS, "loop": loop}
    try:
        yield SMTP(handler, **options), BoundedSMTP(handler, **options)
    finally:
        executor.shutdown()
        loop.close()


def test_the_command_auth_and_hook_tables_are_aiosmtpds(protocols: tuple[SMTP, BoundedSMTP]) -> None:
    theirs, ours = protocols
    assert ours._smtp_methods.keys() == theirs._smtp_methods.keys()
    assert ours._auth_methods.keys() == theirs._auth_methods.keys()
    assert ours._handle_hooks.keys() == theirs._handle_hooks.keys()
    assert {"EHLO", "MAIL", "RCPT", "DATA", "QUIT", "HELP"} <= ours._smtp_methods.keys()
    assert {"RCPT", "DATA"} <= ours._handle_hooks.keys()
    # The tables hold this connection's own bound methods, not another's.
    assert ours._smtp_methods["MAIL"].__self__ is ours


@pytest.mark.parametrize("argument", ADDRESS_ARGUMENTS)
def test_addresses_parse_as_aiosmtpd_parses_them(protocols: tuple[SMTP, BoundedSMTP], argument: str) -> None:
    theirs, ours = protocols
    assert ours._getaddr(argument) == theirs._getaddr(argument)


def test_plain_paths_and_near_misses_parse_as_aiosmtpd_parses_them(
    protocols: tuple[SMTP, BoundedSMTP],
) -> None:
    theirs, ours = protocols
    differing = [arg for arg in GENERATED if ours._getaddr(arg) != theirs._getaddr(arg)]
    assert differing == []


def test_the_local_part_limit_holds_for_plain_paths(protocols: tuple[SMTP, BoundedSMTP]) -> None:
    theirs, ours = protocols
    for protocol in protocols:
        protocol.local_part_limit = 64
    for argument in ["<" + "l" * 64 + "@customer.test>", "<" + "l" * 65 + "@customer.test> SIZE=1"]:
        assert ours._getaddr(argument) == theirs._getaddr(argument)
    assert ours._getaddr("<" + "l" * 65 + "@customer.test>") == (None, None)


def test_a_real_dialogue_gets_aiosmtpds_answers(desk: Desk) -> None:
    with running_intake(desk) as port, client(port) as smtp:
        code, text = smtp.docmd("HELP")
        assert code == 250
        assert b"MAIL" in text and b"RCPT" in text and b"DATA" in text
        assert smtp.docmd("MAIL", "FROM:<bob@>")[0] == 553
        assert smtp.docmd("MAIL", "FROM:(comment) <bob@customer.test>")[0] == 553
        assert smtp.docmd("MAIL", "FROM:<bob@customer.test> SIZE=10")[0] == 250
        assert smtp.docmd("RCPT", "TO:<support@acme.test>")[0] == 250
        assert smtp.docmd("RCPT", "TO:<@acme.test>")[0] == 553
