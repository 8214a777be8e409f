"""People named in a staff reply, mentioned for real where that reply is posted.

The stored body names people (`@dan`), as the email needs. In a customer's Slack thread a name can
be a mention again (`<@U…>`, which notifies them), but only for someone known to be in that
channel and not staff: the customers who wrote there. Anyone else stays a name: a mention of a
person who is not in the channel would ask to invite them, or show staff to the customer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.text.split import SECTION_LIMIT
from bot.text.to_slack import SlackMessagePayload

# What a name in it must not become a mention in: code (a fenced block, an inline span), where a
# mention shows as its raw syntax; Slack's own `<…>` (a link, its label, a mention or channel),
# which a `<@…>` inside would break; and a bare URL, whose path may hold `@name` (a profile page:
# `https://www.youtube.com/@dan`), which Slack links as typed.
_KEPT = re.compile(r"```.*?```|`[^`\n]+`|<[^<>\n]*>|\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>]+", re.DOTALL)


def _mention_in(text: str, pattern: re.Pattern[str], people: Mapping[str, str]) -> str:
    def outside_code(part: str) -> str:
        # The longest name matches first; one of `others` is left as written.
        return pattern.sub(
            lambda found: f"<@{people[found.group(1)]}>" if found.group(1) in people else found.group(0),
            part,
        )

    pieces: list[str] = []
    last = 0
    for code in _KEPT.finditer(text):
        pieces.append(outside_code(text[last : code.start()]))
        pieces.append(code.group(0))
        last = code.end()
    pieces.append(outside_code(text[last:]))
    return "".join(pieces)


def with_mentions(
    payloads: list[SlackMessagePayload], people: Mapping[str, str], others: Iterable[str] = ()
) -> list[SlackMessagePayload]:
    """`@name` in the payloads' sections as a mention of its person (`people`: shown name to user
    id), outside code and links. `others`: names of other people that begin with one of theirs
    (`Bob Baker` for a customer shown as `Bob`), which stay names: `@Bob Baker` is not Bob. The
    fallback `text` keeps the name (it is what a notification shows); a section that would grow
    past Slack's limit keeps its names."""
    if not any(name.strip() for name in people):
        return payloads
    names = sorted({name for name in (*people, *others) if name.strip()}, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w@])@(" + "|".join(map(re.escape, names)) + r")(?![\w])")
    changed: list[SlackMessagePayload] = []
    for payload in payloads:
        blocks = []
        for block in payload["blocks"]:
            text = block.get("text") if block.get("type") == "section" else None
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                mentioned = _mention_in(text["text"], pattern, people)
                if len(mentioned) <= SECTION_LIMIT:
                    block = {**block, "text": {**text, "text": mentioned}}
            blocks.append(block)
        changed.append(SlackMessagePayload(text=payload["text"], blocks=blocks))
    return changed
