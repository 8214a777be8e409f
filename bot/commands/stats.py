"""`stats [7d|30d]`: volume, first response and resolution from the ticket event trail."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb
from bot.text import escape_mrkdwn
from store import queries
from store.models import utcnow

DEFAULT_DAYS = 7
MAX_DAYS = 366
_PERIOD = re.compile(r"^(\d{1,3})d$")


def duration_words(value: timedelta | None) -> str:
    """`45s`, `12m`, `1h 20m`, `2d 3h`: two units at most, enough to compare periods."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def percent(share: float | None) -> str:
    """`25 %`, or `—` when there is nothing to take a share of."""
    return "—" if share is None else f"{round(share * 100)} %"


def _tally(counts: dict[str, int]) -> str:
    return ", ".join(f"{escape_mrkdwn(name)} {count}" for name, count in counts.items())


def stats_lines(stats: queries.DeskStats, days: int) -> list[str]:
    period = "1 day" if days == 1 else f"{days} days"
    lines = [
        f"*Last {period}* (tickets opened since {stats.since:%Y-%m-%d %H:%M} UTC)",
        f"• Opened: {stats.created}" + (f" ({_tally(stats.created_by_origin)})" if stats.created else ""),
        f"• First response: {stats.responded} answered, median {duration_words(stats.first_response_median)}",
        f"• Resolved: {stats.resolved}, median time to resolution {duration_words(stats.resolution_median)}",
        f"• Reopened: {stats.reopened} of {stats.resolved} resolved ({percent(stats.reopen_rate)})",
        f"• Repeat requesters: {stats.repeat_requesters}",
    ]
    if stats.created_by_label:
        lines.append(f"• By label: {_tally(stats.created_by_label)}")
    lines.append(f"• Now: {stats.open_now} open or pending, {stats.unassigned_now} unassigned")
    return lines


def run_stats(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 1)
    days = DEFAULT_DAYS
    if inv.args:
        match = _PERIOD.match(inv.args[0].word)
        if match is None or not 1 <= int(match.group(1)) <= MAX_DAYS:
            # Any number of days up to MAX_DAYS works: say so, or `400d` reads as if only 7d and 30d did.
            raise UsageError(
                f"`{str(inv.args[0])[:20]}` is not a period: say a number of days from 1 to {MAX_DAYS}, "
                "such as 7d or 30d."
            )
        days = int(match.group(1))
    now = utcnow()
    with ctx.desk.db.read() as session:
        stats = queries.desk_stats(session, now - timedelta(days=days), now)
    return CommandReply("\n".join(stats_lines(stats, days)))


VERBS = (Verb("stats", run_stats, "[7d|30d]", takes_ticket=False, aliases=("metrics",)),)
