"""Short thread lines and ephemeral answers. Texts are constants; functions fill them in.

All of these are mrkdwn: names and addresses from users are escaped here, so callers pass raw
values.
"""

from __future__ import annotations

from bot.blocks.format import word
from bot.text import escape_mrkdwn

# Reactions the bot puts on staff messages in a triage thread.
REACTION_NOTE = "lock"
REACTION_PENDING = "hourglass_flowing_sand"
REACTION_DELIVERED = "white_check_mark"
REACTION_FAILED = "warning"
REACTION_COMMAND = "gear"

CUSTOMER_ACK = "Ticket #{number} opened — we'll reply here."
NOTE_MARKER = ":lock: Internal note — not sent to the customer."
NOT_STAFF = "Sorry, only members of the support team can do that."
UNKNOWN_TICKET = "There is no ticket #{number}."
REPLY_PENDING = (
    ":hourglass_flowing_sand: Sending to {recipients} in {seconds}s — "
    "delete or edit your message to change that."
)
REPLY_DELIVERED = ":white_check_mark: Delivered to {recipients}."
DELIVERY_FAILED = (
    ":warning: Couldn't deliver to {recipient}: {reason} — check the address or "
    "`/desk cc {number} remove {address}`."
)
SLACK_DELIVERY_FAILED = ":warning: Couldn't post in the customer's Slack thread: {reason}."
REOPENED = ":arrows_counterclockwise: Reopened: {reason}."
REOPENED_BY_CUSTOMER = "the customer wrote again"
MERGED_INTO = (
    ":twisted_rightwards_arrows: Merged into #{target} by {actor}: messages and participants moved there."
)
MERGED_FROM = (
    ":twisted_rightwards_arrows: #{source} was merged into this ticket by {actor}: its messages follow here."
)
COMMAND_USAGE = "Unknown command `!{verb}`. In a ticket thread: {examples}. All commands: `/desk help`."
DESK_USAGE = "Unknown command `/desk {verb}`. Try `/desk help` for the list of commands."
THREAD_COMMAND_EXAMPLES = (
    "`!close`",
    "`!status pending`",
    "`!assign @alice`",
    "`!priority high`",
    "`!label +bug -question`",
    "`!cc add bob@example.com`",
    "`!link 17`",
)


def _shown_verb(verb: str) -> str:
    # Shown inside a code span: a backtick would end it, and a long paste is cut short.
    return escape_mrkdwn(verb.replace("`", "")[:40])


def customer_ack(number: int) -> str:
    """The bot's answer in a customer's own Slack thread when their message opens a ticket."""
    return CUSTOMER_ACK.format(number=number)


def change_line(actor: str, field: str, value: str) -> str:
    """``Alice set priority to high``."""
    return f"{escape_mrkdwn(actor)} set {field} to {escape_mrkdwn(value)}"


def status_line(actor: str, status: str) -> str:
    return change_line(actor, "status", word(status).lower())


def priority_line(actor: str, priority: str) -> str:
    return change_line(actor, "priority", word(priority).lower())


def assignee_line(actor: str, assignee_user_id: str | None) -> str:
    if assignee_user_id is None:
        return f"{escape_mrkdwn(actor)} unassigned the ticket"
    return f"{escape_mrkdwn(actor)} assigned the ticket to <@{assignee_user_id}>"


def labels_line(actor: str, added: tuple[str, ...], removed: tuple[str, ...]) -> str:
    parts = []
    if added:
        parts.append("added " + ", ".join(escape_mrkdwn(label) for label in added))
    if removed:
        parts.append("removed " + ", ".join(escape_mrkdwn(label) for label in removed))
    return f"{escape_mrkdwn(actor)} {' and '.join(parts) or 'left the labels unchanged'}"


def note_marker() -> str:
    return NOTE_MARKER


def reply_pending(recipients: str, seconds: int) -> str:
    return REPLY_PENDING.format(recipients=escape_mrkdwn(recipients), seconds=seconds)


def reply_delivered(recipients: str) -> str:
    return REPLY_DELIVERED.format(recipients=escape_mrkdwn(recipients))


def delivery_failed(number: int, recipient: str, reason: str) -> str:
    """``Couldn't deliver to dan@globex.example: mailbox unavailable — check the address or
    `/desk cc 42 remove dan@globex.example`.``"""
    return DELIVERY_FAILED.format(
        recipient=escape_mrkdwn(recipient),
        reason=escape_mrkdwn(reason),
        number=number,
        address=escape_mrkdwn(recipient),
    )


def slack_delivery_failed(reason: str) -> str:
    return SLACK_DELIVERY_FAILED.format(reason=escape_mrkdwn(reason))


def reopened(reason: str = REOPENED_BY_CUSTOMER) -> str:
    return REOPENED.format(reason=escape_mrkdwn(reason))


def merged_into(target: int, actor: str) -> str:
    """Posted in the thread of the ticket that was merged away."""
    return MERGED_INTO.format(target=target, actor=escape_mrkdwn(actor))


def merged_from(source: int, actor: str) -> str:
    """Posted in the thread of the ticket that received the merge."""
    return MERGED_FROM.format(source=source, actor=escape_mrkdwn(actor))


def not_staff() -> str:
    return NOT_STAFF


def unknown_ticket(number: int) -> str:
    return UNKNOWN_TICKET.format(number=number)


def command_usage(verb: str) -> str:
    """The answer to an unknown ``!`` command typed in a ticket thread."""
    return COMMAND_USAGE.format(verb=_shown_verb(verb), examples=", ".join(THREAD_COMMAND_EXAMPLES))


def desk_usage(verb: str) -> str:
    """The answer to an unknown ``/desk`` verb."""
    return DESK_USAGE.format(verb=_shown_verb(verb))
