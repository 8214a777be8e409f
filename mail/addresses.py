"""Email addresses: robust address-list parsing, and the support address with its `+key` forms.

Address lists are split with a small tokenizer rather than `email.utils.getaddresses` or the
`policy.default` header objects, because both take the *display name* for the address when it is
an unquoted address itself (`alice@example.com <bob@example.com>` yields alice, the name, not bob,
the mailbox). The address part is what the mail system delivers to, so it is the only part that
ever identifies a sender. Display names are decoded (RFC 2047) only after splitting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mail.inbound_charset import decode_surrogates
from mail.inbound_headers import clean_text, decode_encoded_words, unfold
from store.domains import ascii_domain, with_ascii_domain
from store.limits import MAX_ADDRESS_CHARS

# A pragmatic addr-spec shape (RFC 5322 section 3.4.1 dot-atom; internationalised per RFC 6531):
# no whitespace, quotes, brackets or separators; a domain of labels, or an address literal.
_LOCAL_PART = r"[^\s@<>()\[\]\\,;:\"]{1,64}"
_DOMAIN = r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?(?:\.[^\W_](?:[\w-]{0,61}[^\W_])?)*|\[[0-9A-Fa-f:.]{2,45}\])"
_ADDR_SPEC = re.compile(rf"^{_LOCAL_PART}@{_DOMAIN}$")
_REPLY_KEY = re.compile(r"^[a-z0-9]{26,}$")


@dataclass(frozen=True)
class Mailbox:
    name: str  # decoded display name, possibly empty
    address: str | None  # lowercased addr-spec, or None when the element held no valid address


def normalize_address(value: str) -> str | None:
    """A lowercased addr-spec when `value` has the shape of one, else None. An internationalised
    domain is given in its ASCII form (`bücher.example` as `xn--bcher-kva.example`): a customer
    writing it either way is one customer."""
    address = clean_text(value).strip("<>").strip().lower()
    if not address or len(address) > MAX_ADDRESS_CHARS or not _ADDR_SPEC.match(address):
        return None
    converted = with_ascii_domain(address)
    return converted if len(converted) <= MAX_ADDRESS_CHARS else address


def _split_elements(value: str) -> list[str]:
    """Split an address list on commas that are outside quotes, comments and angle brackets."""
    elements: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    comment_depth = angle_depth = 0
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or comment_depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "(":
            comment_depth += 1
        elif ch == ")" and comment_depth:
            comment_depth -= 1
        elif comment_depth:
            pass
        elif ch == "<":
            angle_depth += 1
        elif ch == ">" and angle_depth:
            angle_depth -= 1
        elif ch in ",;" and not angle_depth:
            # ";" ends an RFC 5322 group ("team: a@x, b@y;"), and Outlook users type it as a
            # separator; it never belongs to an address.
            elements.append("".join(current))
            current = []
            continue
        current.append(ch)
    elements.append("".join(current))
    return [element.strip() for element in elements if element.strip()]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _group_prefix_removed(element: str) -> str:
    """Drop an RFC 5322 group name ("Team: a@x") when the colon comes before any address."""
    colon = element.find(":")
    if colon > 0 and '"' not in element[:colon] and "<" not in element[:colon] and "@" not in element[:colon]:
        return element[colon + 1 :].strip()
    return element


def parse_mailbox(element: str) -> Mailbox:
    """One address-list element: `Name <addr>`, `addr (Name)` or a bare addr."""
    element = _group_prefix_removed(element)
    open_angle = element.rfind("<")
    close_angle = element.find(">", open_angle + 1)
    if open_angle >= 0 and close_angle > open_angle:
        inner = element[open_angle + 1 : close_angle]
        inner = inner.rsplit(":", 1)[-1]  # obsolete source route "<@relay:user@host>"
        name = element[:open_angle] + " " + element[close_angle + 1 :]
        address = normalize_address(inner)
    else:
        comments = re.findall(r"\(([^()]*)\)", element)
        bare = re.sub(r"\([^()]*\)", " ", element)
        address = normalize_address(bare)
        name = " ".join(comments)
    display = clean_text(decode_encoded_words(_unquote(clean_text(name))))
    return Mailbox(name=display, address=address)


def parse_mailboxes(values: Iterable[str]) -> list[Mailbox]:
    """Every element of every raw header value, in order (invalid addresses kept as None)."""
    # Raw 8-bit header bytes are UTF-8 addresses and names (RFC 6532) or legacy text.
    return [
        parse_mailbox(element)
        for value in values
        for element in _split_elements(decode_surrogates(unfold(value)))
    ]


def parse_addresses(values: Iterable[str]) -> tuple[str, ...]:
    """The valid addresses of raw address-list header values, lowercased, first occurrence kept."""
    seen: dict[str, None] = {}
    for mailbox in parse_mailboxes(values):
        if mailbox.address is not None:
            seen.setdefault(mailbox.address, None)
    return tuple(seen)


def support_address_parts(address: str) -> tuple[str, str]:
    """(local part, domain) of the support address, lowercased; ValueError when malformed."""
    normalized = normalize_address(address)
    if normalized is None:
        raise ValueError(f"not an email address: {address!r}")
    local, _, domain = normalized.rpartition("@")
    return local, domain


def split_support_address(address: str, support_address: str) -> tuple[bool, str | None]:
    """Whether `address` is the support mailbox (in any case), and the `+detail` it carries (RFC 5233
    subaddress; None for the bare address)."""
    normalized = normalize_address(address)
    if normalized is None:
        return False, None
    local, domain = support_address_parts(support_address)
    their_local, _, their_domain = normalized.rpartition("@")
    if ascii_domain(their_domain) != ascii_domain(domain):
        return False, None
    if their_local == local:
        return True, None
    if their_local.startswith(local + "+"):
        return True, their_local[len(local) + 1 :]
    return False, None


def extract_reply_key(address: str, support_address: str) -> str | None:
    """The reply key of `local+key@domain`, or None when it is not a well-formed one of ours."""
    ours, detail = split_support_address(address, support_address)
    if not ours or detail is None or not _REPLY_KEY.match(detail):
        return None
    return detail


def is_own_address(address: str, support_address: str) -> bool:
    """True for the support address and every `+detail` form of it, in any case.

    Mail from these addresses is our own mail coming back (a loop); it never opens a ticket,
    and they are never added as participants.
    """
    return split_support_address(address, support_address)[0]
