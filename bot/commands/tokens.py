"""Words of a command as Slack sends them, and what each can mean (ticket, person, address, link).

`/desk` is declared with `should_escape: true` and in-thread commands are message text, so both
arrive as Slack mrkdwn: people as `<@U…>` or `<@U…|name>`, links as `<https://…>` or
`<https://…|label>`, addresses as `<mailto:a@b|a@b>`, and `&`, `<`, `>` as entities. A token is
either one whole `<…>` item (whose label may hold spaces) or a run of non-space characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.text import MentionResolver
from store.actions.common import check_address
from store.db import InvalidRequest

_TOKEN = re.compile(r"<[^<>\s][^<>]*>|\S+")
# Slack user ids are a few characters; the store keeps up to 32.
_USER = re.compile(r"^<@([UW][A-Z0-9]{1,31})(?:\|([^>]*))?>$")
_MAILTO = re.compile(r"^<mailto:([^|>]+)(?:\|[^>]*)?>$")
_LINK = re.compile(r"^<(https?://[^|>]+)(?:\|[^>]*)?>$", re.I)
_ANGLE = re.compile(r"<([^<>]+)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_NUMBER = re.compile(r"^#?(\d{1,15})$")
_SEPARATED = re.compile(r"[^,;]+")


def unescape(text: str) -> str:
    """Slack's three entities back to characters."""
    return _ENTITY.sub(lambda match: _ENTITIES[match.group(1)], text)


@dataclass(frozen=True)
class Token:
    """One word of the command, with where it starts in the text (for free text after it)."""

    raw: str
    start: int

    @property
    def word(self) -> str:
        """The word as a person typed it, for keywords (`into`, `add`, `mine`)."""
        return unescape(self.raw).lower()

    def __str__(self) -> str:
        return plain_words(self.raw)


def tokenize(text: str) -> list[Token]:
    return [Token(match.group(0), match.start()) for match in _TOKEN.finditer(text)]


def list_items(tokens: list[Token]) -> list[Token]:
    """The items of a list typed as words, with commas or semicolons between them or not
    (`a@x.example, b@x.example;c@x.example`, as addresses are pasted from a mail's Cc line). A
    `<…>` item is one item whole: a separator after it is a word of its own."""
    items: list[Token] = []
    for token in tokens:
        if token.raw.startswith("<"):
            items.append(token)
            continue
        for part in _SEPARATED.finditer(token.raw):
            items.append(Token(part.group(0), token.start + part.start()))
    return items


def ticket_number(token: Token) -> int | None:
    """`42` or `#42`; anything else (including `0`) is not a ticket number."""
    match = _NUMBER.match(token.raw)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1))


def user_mention(token: Token) -> tuple[str, str | None] | None:
    """(user id, the name Slack put in the mention) for `<@U…>` / `<@U…|name>`."""
    match = _USER.match(token.raw)
    if match is None:
        return None
    return match.group(1), (match.group(2) or None)


def email_address(token: Token) -> str | None:
    """A plain email address, from `<mailto:…|…>` or as typed; lower-cased."""
    match = _MAILTO.match(token.raw)
    try:
        address = check_address(unescape(match.group(1) if match else token.raw))
    except InvalidRequest:
        return None
    # Typed by staff for a customer: a domain on the Internet (a dot), not a host name or a literal.
    domain = address.partition("@")[2]
    return address if "." in domain and "[" not in domain else None


def link_url(token: Token) -> str | None:
    """An http(s) URL, from `<https://…|label>` or as typed."""
    match = _LINK.match(token.raw)
    if match:
        return unescape(match.group(1))
    raw = unescape(token.raw)
    return raw if re.match(r"^https?://\S+$", raw, re.I) else None


def plain_words(text: str, resolver: MentionResolver | None = None) -> str:
    """mrkdwn as the words a reader sees: `<…>` items by their label or name, entities decoded.

    Used for subjects, which are plain text everywhere (email subject lines above all).
    """

    def shown(item: str) -> str:
        target, _, label = item[1:-1].partition("|")
        if label:
            return unescape(label)
        if target.startswith("@") and resolver is not None:
            return "@" + resolver.user_name(target[1:])
        if target.startswith("#") and resolver is not None:
            return "#" + resolver.channel_name(target[1:])
        return unescape(target.removeprefix("mailto:"))

    parts = _ANGLE.split(text)
    # split() with one group alternates literal text (even) and the inside of a <…> item (odd).
    return "".join(shown(f"<{part}>") if index % 2 else unescape(part) for index, part in enumerate(parts))
