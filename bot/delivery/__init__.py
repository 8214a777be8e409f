"""Slack delivery: the performers of the `slack.*` outbox kinds, their pacing and error mapping."""

from bot.delivery.slack import Performer, SlackDelivery

__all__ = ["Performer", "SlackDelivery"]
