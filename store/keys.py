"""Opaque random keys: reply keys, unsubscribe keys, Message-IDs. Never derived from numbers."""

from __future__ import annotations

import base64
import secrets


def random_key() -> str:
    """28 characters of [a-z2-7]: 136 random bits, safe in an email local part in any case."""
    return base64.b32encode(secrets.token_bytes(17)).decode("ascii").rstrip("=").lower()


def new_message_id(domain: str, tag: str = "sd") -> str:
    """A Message-ID (without angle brackets) fixed when the outbox row is written."""
    return f"{tag}.{secrets.token_hex(12)}@{domain}"
