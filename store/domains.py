"""Mail domains in one form, so that one mailbox is one customer and one participant."""

from __future__ import annotations


def ascii_domain(domain: str) -> str | None:
    """`domain` (lowercased) in its ASCII form: an internationalised domain's Unicode labels as the
    `xn--` labels naming the same host (RFC 5890). An SMTPUTF8 client may write either form, so
    `bücher.example` and `xn--bcher-kva.example` are one domain. None when it has no ASCII form."""
    if domain.isascii():
        return domain.lower()
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def with_ascii_domain(address: str) -> str:
    """`local@domain` with the domain in its ASCII form (the local part as written), or `address`
    unchanged when its domain has none. The ASCII form is the one every relay can deliver to."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    converted = ascii_domain(domain)
    return f"{local}@{converted}" if converted else address
