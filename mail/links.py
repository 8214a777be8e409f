"""Links the desk hands out under SERVICEDESK_PUBLIC_URL: unsubscribe, the original message, big files.

The unsubscribe link carries the participant's own random key (it is the same key as in the
`+unsub-<key>` address, so it proves nothing more than that address does). The original message and
attachment links are signed with the desk's link secret (HMAC-SHA256, RFC 2104): a raw .eml holds
every header and part of a customer's mail, so only a link the desk generated opens it; ids in the
path cannot be walked. Without a public URL there are no links at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# 160 bits of the MAC: far beyond guessing over HTTP, short enough for a readable link.
TOKEN_BYTES = 20


def link_token(secret: bytes, purpose: str, *parts: str | int) -> str:
    """The signature of one link: what it opens (`purpose`) and which object, bound together."""
    message = "\x1f".join([purpose, *(str(part) for part in parts)]).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def token_matches(token: str, secret: bytes, purpose: str, *parts: str | int) -> bool:
    return hmac.compare_digest(token.encode(), link_token(secret, purpose, *parts).encode())


def unsubscribe_url(public_url: str, key: str) -> str:
    return f"{public_url}/unsubscribe/{key}" if public_url else ""


def raw_message_url(public_url: str, secret: bytes, message_id: int, raw_sha256: str) -> str:
    """Where the original .eml of an inbound message can be downloaded."""
    if not public_url:
        return ""
    token = link_token(secret, "raw", message_id, raw_sha256)
    return f"{public_url}/raw/{message_id}/{token}"


def attachment_url(public_url: str, secret: bytes, attachment_id: int, sha256: str) -> str:
    """Where a file too large to attach to an email can be downloaded."""
    if not public_url:
        return ""
    token = link_token(secret, "file", attachment_id, sha256)
    return f"{public_url}/files/{attachment_id}/{token}"
