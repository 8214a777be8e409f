"""Short thread lines and ephemeral answers. Texts are constants; functions fill them in.

All of these are mrkdwn: names and addresses from users are escaped here, so callers pass raw
values.
"""

from __future__ import annotations

from bot.text import escape_mrkdwn

CUSTOMER_ACK = "Ticket #{number} opened — we'll reply here."
NOTE_MARKER = ":lock: Internal note — not sent to the customer."
NOT_STAFF = "Sorry, only members of the support team can do that."
DELIVERY_FAILED = (
    ":warning: Couldn't deliver to {recipient}: {reason} — check the address or "
    "`/desk cc {number} remove {address}`."
)
# The requester cannot be removed (`cc remove` refuses), so the hint above would send staff to a
# command that fails: for them, the ticket's other ways to reach the customer are the fix.
REQUESTER_DELIVERY_FAILED = (
    ":warning: Couldn't deliver to {recipient}, who opened the ticket: {reason} — check the address, "
    "or reach them another way (`/desk new` opens a ticket for a corrected address)."
)
SLACK_DELIVERY_FAILED = ":warning: Couldn't post in the customer's Slack thread: {reason}."
COMMAND_USAGE = "Unknown command `!{verb}`. In a ticket thread: {examples}. All commands: `/desk help`."
DESK_USAGE = "Unknown command `/desk {verb}`. Try `/desk help` for the list of commands."
TOP_LEVEL_COMMAND = (
    "`!{verb}` was not run: commands typed with `!` work in a ticket's thread, on that ticket. "
    "Here, use `/desk {verb}` (with the ticket's number when it takes one)."
)
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


def delivery_failed(number: int, recipient: str, reason: str, *, requester: bool = False) -> str:
    """``Couldn't deliver to dan@globex.example: mailbox unavailable — check the address or
    `/desk cc 42 remove dan@globex.example`.``"""
    template = REQUESTER_DELIVERY_FAILED if requester else DELIVERY_FAILED
    return template.format(
        recipient=escape_mrkdwn(recipient),
        reason=escape_mrkdwn(reason),
        number=number,
        address=escape_mrkdwn(recipient),
    )


def slack_delivery_failed(reason: str) -> str:
    return SLACK_DELIVERY_FAILED.format(reason=escape_mrkdwn(reason))


def top_level_command(verb: str) -> str:
    """The answer to a ``!`` command typed at the top of the triage channel, outside any thread."""
    return TOP_LEVEL_COMMAND.format(verb=_shown_verb(verb))


def not_staff() -> str:
    return NOT_STAFF


def command_usage(verb: str) -> str:
    """The answer to an unknown ``!`` command typed in a ticket thread."""
    return COMMAND_USAGE.format(verb=_shown_verb(verb), examples=", ".join(THREAD_COMMAND_EXAMPLES))


def desk_usage(verb: str) -> str:
    """The answer to an unknown ``/desk`` verb."""
    return DESK_USAGE.format(verb=_shown_verb(verb))
