"""``/desk help``: every verb of the triage table with its syntax, and the in-thread forms."""

from __future__ import annotations

from typing import Any

from bot.blocks.format import context_line
from bot.text import escape_mrkdwn

# (syntax, what it does), in the order of the design's Triage table.
DESK_COMMANDS: tuple[tuple[str, str], ...] = (
    (
        "new <email> <subject>",
        "open a ticket for a customer; your first message in its thread is emailed to them",
    ),
    ("note <n> <text>", "add an internal note (never sent)"),
    (
        "status <n> open|pending|resolved|closed",
        "change the status; the customer is told when it is resolved, closed or reopened",
    ),
    ("close <n>", "close the ticket"),
    ("reopen <n>", "reopen the ticket"),
    ("assign <n> @user|me", "set the owner"),
    ("unassign <n>", "remove the owner"),
    ("priority <n> low|normal|high|urgent", "set the priority"),
    ("label <n> +a -b", "add and remove labels"),
    ("labels", "list the labels"),
    ("label-create <name> [color]", "define a new label"),
    ("link <n> <m|url> [relates|duplicates|blocks]", "link to another ticket or to any issue URL"),
    ("unlink <n> <m|url>", "remove a link"),
    ("merge <n> into <m>", "merge a duplicate: messages and participants move, the customer is told"),
    ("cc <n> add|remove <email>", "add or remove a participant"),
    ("show <n>", "show a ticket"),
    ("list [mine|unassigned|label:x|status:y] [page:N]", "list tickets, 20 a page"),
    ("search <text> [page:N]", "find tickets"),
    ("customer <email|@user>", "a customer's record, organization and ticket history"),
    ("stats [7d|30d]", "metrics for the last 7 days (or any number: 30d)"),
    ("help [verb]", "this help, or one verb's usage (`/desk help merge`)"),
)

THREAD_FORMS: tuple[str, ...] = (
    "`!close`, `!reopen`, `!status pending`",
    "`!assign @alice`, `!unassign`, `!priority high`",
    "`!label +bug -question`",
    "`!cc add bob@example.com`, `!cc remove bob@example.com`",
    "`!link 17`, `!link https://tracker/issues/9 blocks`, `!unlink 17`",
    "`!merge into 17`",
)

HELP_INTRO = (
    "*Service desk commands.* Answers are only visible to you; "
    "a command that acts on a ticket takes its number."
)
HELP_THREAD = (
    "*In a ticket's thread* the same verbs work without the number, as a message starting with `!` "
    "(never sent to the customer):"
)
HELP_REPLIES = (
    "*Replying:* anything else you write in a ticket's thread goes to the customer after a short delay "
    "(delete or edit it meanwhile to cancel or change it). Start a message with `note:` to keep it internal."
)


def _verb_lines() -> str:
    # The syntax's `<n>` and `<email>` escaped: unescaped, Slack takes them for links and shows
    # `/desk new email subject`, or `customer <email|@user>` as a link labelled "@user".
    return "\n".join(f"`/desk {escape_mrkdwn(syntax)}` — {meaning}" for syntax, meaning in DESK_COMMANDS)


def help_text() -> str:
    """The whole help as one mrkdwn text (also the ephemeral message's fallback)."""
    verbs = _verb_lines()
    thread = "\n".join(f"• {forms}" for forms in THREAD_FORMS)
    return f"{HELP_INTRO}\n{verbs}\n\n{HELP_THREAD}\n{thread}\n\n{HELP_REPLIES}"


def help_blocks() -> list[dict[str, Any]]:
    verbs = _verb_lines()
    thread = "\n".join(f"• {forms}" for forms in THREAD_FORMS)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{HELP_INTRO}\n{verbs}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{HELP_THREAD}\n{thread}"}},
        context_line(HELP_REPLIES),
    ]
