"""`stats [7d|30d]`: volume, first response and resolution from the ticket event trail."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.blocks import Metric
from bot.blocks.format import count, slack_date
from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb
from bot.text import escape_mrkdwn
from store import queries
from store.models import utcnow

DEFAULT_DAYS = 7
MAX_DAYS = 366
_PERIOD = re.compile(r"^(\d{1,9})d$")


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
    return ", ".join(f"{escape_mrkdwn(name)} {count(number)}" for name, number in counts.items())


def stats_lines(stats: queries.DeskStats, days: int) -> list[str]:
    period = "1 day" if days == 1 else f"{days} days"
    lines = [
        # In each reader's own time zone (UTC where Slack cannot show it), as the card's times are.
        f"*Last {period}* (tickets opened since {slack_date(stats.since)})",
        f"• Opened: {count(stats.created)}"
        + (f" ({_tally(stats.created_by_origin)})" if stats.created else ""),
        f"• First response: {count(stats.responded)} answered, "
        f"median {duration_words(stats.first_response_median)}",
        f"• Resolved: {count(stats.resolved)}, "
        f"median time to resolution {duration_words(stats.resolution_median)}",
        f"• Reopened: {count(stats.reopened)} of {count(stats.resolved)} resolved "
        f"({percent(stats.reopen_rate)})",
        f"• Repeat requesters: {count(stats.repeat_requesters)}",
    ]
    if stats.created_by_label:
        lines.append(f"• By label: {_tally(stats.created_by_label)}")
    lines.append(f"• Now: {count(stats.open_now)} open or pending, {count(stats.unassigned_now)} unassigned")
    return lines


def home_metrics(stats: queries.DeskStats, days: int) -> tuple[Metric, ...]:
    """The App Home's figures: the queue now, and the period's volume and times."""
    return (
        Metric("Open or pending", count(stats.open_now)),
        Metric("Unassigned", count(stats.unassigned_now)),
        Metric(f"Opened, last {days} days", count(stats.created)),
        Metric("Median first response", duration_words(stats.first_response_median)),
        Metric("Median time to resolution", duration_words(stats.resolution_median)),
        Metric("Reopen rate", percent(stats.reopen_rate)),
    )


def _period_days(word: str, shown: str) -> int:
    """`30d` as 30; one out of range is named as such (`367d` is a period, just not one counted)."""
    match = _PERIOD.match(word)
    if match is None:
        raise UsageError(
            f"`{shown}` is not a period: say a number of days from 1 to {MAX_DAYS}, such as 7d or 30d."
        )
    days = int(match.group(1))
    if not 1 <= days <= MAX_DAYS:
        size = "short" if days < 1 else "long"
        raise UsageError(f"`{shown}` is too {size}: a period is 1 to {MAX_DAYS} days (1d to {MAX_DAYS}d).")
    return days


def run_stats(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 1)
    days = DEFAULT_DAYS
    if inv.args:
        days = _period_days(inv.args[0].word, str(inv.args[0])[:20])
    now = utcnow()
    with ctx.desk.db.read() as session:
        stats = queries.desk_stats(session, now - timedelta(days=days), now)
    return CommandReply("\n".join(stats_lines(stats, days)))


VERBS = (Verb("stats", run_stats, "[7d|30d]", takes_ticket=False, aliases=("metrics",)),)
