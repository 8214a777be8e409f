"""Slack date tokens (``{date_short_pretty}``, ``{time}`` …) rendered in UTC for stored text.

Slack formats a date in each reader's own time zone; the stored body is read later, by email,
so it gets a fixed, explicit UTC rendering instead.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_TOKEN = re.compile(r"\{(\w+)\}")


def _token_value(token: str, moment: datetime) -> str | None:
    day = f"{moment:%B} {moment.day}, {moment.year}"
    match token:
        case "date_num":
            return f"{moment:%Y-%m-%d}"
        case "date_slash":
            return f"{moment:%d/%m/%Y}"
        case "date_short" | "date_short_pretty":
            return f"{moment:%b} {moment.day}, {moment.year}"
        case "date_long" | "date_long_pretty" | "day_divider_pretty":
            return f"{moment:%A}, {day}"
        case "date" | "date_pretty" | "date_long_full":
            return day
        case "time":
            return f"{moment:%H:%M} UTC"
        case "time_secs":
            return f"{moment:%H:%M:%S} UTC"
        case "ago":
            return f"{moment:%Y-%m-%d %H:%M} UTC"
    return None


def format_slack_date(timestamp: float | int | str, template: str) -> str:
    """``template`` with its date tokens filled in from the Unix ``timestamp`` (UTC)."""
    try:
        moment = datetime.fromtimestamp(float(timestamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return template
    return _TOKEN.sub(lambda match: _token_value(match.group(1), moment) or match.group(0), template)
