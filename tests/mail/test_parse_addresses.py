"""Address lists, the support address and reply addresses."""

from __future__ import annotations

import pytest

from mail.addresses import (
    Mailbox,
    extract_reply_key,
    normalize_address,
    parse_addresses,
    parse_mailboxes,
    split_support_address,
    support_address_parts,
)
from store.intake_keys import reply_address

KEY = "k" * 10 + "0123456789abcdef"  # 26 characters


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Ada <ADA@Example.com>", [Mailbox("Ada", "ada@example.com")]),
        ('"ceo@bank.example" <evil@x.example>', [Mailbox("ceo@bank.example", "evil@x.example")]),
        ("ceo@bank.example <evil@x.example>", [Mailbox("ceo@bank.example", "evil@x.example")]),
        (
            '"Doe, John" <j@x.example>, k@y.example',
            [Mailbox("Doe, John", "j@x.example"), Mailbox("", "k@y.example")],
        ),
        ("j@x.example (John Doe)", [Mailbox("John Doe", "j@x.example")]),
        ("Team: a@x.example, b@x.example;", [Mailbox("", "a@x.example"), Mailbox("", "b@x.example")]),
        ("undisclosed-recipients:;", [Mailbox("", None)]),
        ("Name\r\n <folded@x.example>", [Mailbox("Name", "folded@x.example")]),
        ("<@relay.example:user@x.example>", [Mailbox("", "user@x.example")]),
        ('"Quote \\" inside" <q@x.example>', [Mailbox('Quote " inside', "q@x.example")]),
        ("=?utf-8?q?Zo=C3=AB?= <zoe@x.example>", [Mailbox("Zoë", "zoe@x.example")]),
        ("garbage <<<", [Mailbox("", None)]),
    ],
)
def test_parse_mailboxes(header: str, expected: list[Mailbox]) -> None:
    assert parse_mailboxes([header]) == expected


def test_parse_addresses_keeps_valid_ones_once_in_order() -> None:
    headers = ["A <a@x.example>, bad, b@x.example", "A@X.example, c@x.example"]
    assert parse_addresses(headers) == ("a@x.example", "b@x.example", "c@x.example")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("User@Example.COM", "user@example.com"),
        ("support@localhost", "support@localhost"),
        ("ü@bücher.example", "ü@xn--bcher-kva.example"),  # one form of the domain: one mailbox
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("a@b@c", None),
        ("no-at-sign", None),
        ("a b@c.example", None),
        ("a@-bad.example", None),
        ("a@" + "x" * 260 + ".example", None),
    ],
)
def test_normalize_address(value: str, expected: str | None) -> None:
    assert normalize_address(value) == expected


def test_support_address_parts_and_reply_address() -> None:
    assert support_address_parts("Support@Desk.Example") == ("support", "desk.example")
    assert reply_address("support@desk.example", KEY) == f"support+{KEY}@desk.example"
    with pytest.raises(ValueError):
        reply_address("support@desk.example", "short")
    with pytest.raises(ValueError):
        support_address_parts("not an address")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        (f"support+{KEY}@desk.example", KEY),
        (f"Support+{KEY}@DESK.EXAMPLE", KEY),  # addresses are compared lowercased
        (f"support+{KEY}@other.example", None),
        ("support+tooshort@desk.example", None),
        (f"support+{KEY}-x@desk.example", None),
        ("support@desk.example", None),
        (f"sales+{KEY}@desk.example", None),
    ],
)
def test_extract_reply_key(address: str, key: str | None) -> None:
    assert extract_reply_key(address, "support@desk.example") == key


@pytest.mark.parametrize(
    ("address", "split"),
    [
        ("support@desk.example", (True, None)),
        ("<Support@DESK.example>", (True, None)),
        (f"support+{KEY}@desk.example", (True, KEY)),
        ("SUPPORT+Unsub-ABC@desk.example", (True, "unsub-abc")),
        ("support+@desk.example", (True, "")),
        ("support@other.example", (False, None)),
        ("supporter@desk.example", (False, None)),
        ("sales+support@desk.example", (False, None)),
        ("not an address", (False, None)),
    ],
)
def test_split_support_address(address: str, split: tuple[bool, str | None]) -> None:
    """The one reading of the support address and its +key forms, for RCPT checks and routing."""
    assert split_support_address(address, "support@desk.example") == split
