"""Small wording helpers shared by the builders: words for states, ages, ordinals, truncation,
and the one-line context block they all use for small print."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

ELLIPSIS = "…"


def context_line(text: str) -> dict[str, Any]:
    """A Block Kit context block of one mrkdwn line: small grey print under or between sections."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def word(value: str) -> str:
    """A stored state (``resolved``, ``duplicated_by``) as a capitalised word for people."""
    return value.replace("_", " ").capitalize()


# A narrow no-break space: a large count stays one number, on one line, even in a list of counts
# separated by commas ("email 12 000, slack 345"), as the desk writes `25 %`.
THOUSANDS = "\u202f"


def count(number: int) -> str:
    """``12 345``: a count with its thousands grouped."""
    return f"{number:,}".replace(",", THOUSANDS)


def ordinal(number: int) -> str:
    teens = 10 <= number % 100 <= 20
    suffix = "th" if teens else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def age(since: datetime, now: datetime) -> str:
    """A compact age: ``45s``, ``12m``, ``5h``, ``3d``, ``6w``."""
    seconds = max(0, int((now - since) / timedelta(seconds=1)))
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "w" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def slack_date(moment: datetime, template: str = "{date_short_pretty} at {time}") -> str:
    """A ``<!date>`` token: Slack shows it in each reader's own time zone."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{template}|{fallback}>"


def user_mention(user_id: str | None, *, nobody: str = "Unassigned") -> str:
    return f"<@{user_id}>" if user_id else nobody


def link_words(url: str) -> str:
    """An issue URL as ``host #number`` (``github.com #9``, ``jira.example.com PROJ-12``),
    or host and path when no issue number can be seen."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    path = parts.path.rstrip("/")
    if match := re.search(
        r"/(?:issues|pull|pulls|merge_requests|tickets?|bugs?|show_bug\.cgi)/?(\d+)$", path
    ):
        return f"{host} #{match.group(1)}"
    if match := re.search(r"(?:^|&)id=(\d+)", parts.query):
        return f"{host} #{match.group(1)}"
    if match := re.search(r"/([A-Z][A-Z0-9]+-\d+)$", path):
        return f"{host} {match.group(1)}"
    if match := re.search(r"/(\d+)$", path):
        return f"{host} #{match.group(1)}"
    return truncate(host + path, 60) if host else truncate(url, 60)
