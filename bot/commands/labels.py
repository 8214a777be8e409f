"""Labels: `label <n> +a -b`, `labels`, `label-create <name> [color]`.

Labels are a fixed vocabulary: naming one that does not exist is refused (a typo never makes a
new label), and `label-create` defines one.
"""

from __future__ import annotations

from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb, ticket_transaction
from bot.text import escape_mrkdwn
from store import queries
from store.actions import change_labels, create_label
from store.actions.tickets import LABEL_QUOTES


def _label_changes(inv: Invocation) -> tuple[list[str], list[str]]:
    """`+bug -question feature` (a bare name adds); commas work as separators too."""
    add: list[str] = []
    remove: list[str] = []
    for token in inv.args:
        for part in str(token).split(","):
            # `"-bug"` removes, as `-bug` does: quotes around a name are not part of it.
            part = part.strip().strip(LABEL_QUOTES)
            if not part:
                continue
            if part.startswith("-"):
                remove.append(part[1:])
            else:
                add.append(part.removeprefix("+"))
    if not add and not remove:
        raise UsageError("Which labels? `+name` adds one, `-name` removes one.")
    return add, remove


def run_label(ctx: CommandContext, inv: Invocation) -> CommandReply:
    add, remove = _label_changes(inv)
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        added, removed = change_labels(session, ticket, add, remove, ctx.actor)
        now = [label.name for label in ticket.labels]
    if not added and not removed:
        return CommandReply(f"#{inv.number}'s labels are already like that: nothing changed.")
    shown = ", ".join(escape_mrkdwn(name) for name in now) or "none"
    return CommandReply(f"#{inv.number}'s labels: {shown}.")


def set_labels(
    ctx: CommandContext, number: int, names: list[str], *, was: list[str] | None = None
) -> CommandReply:
    """The card's multi-select sends the presser's whole choice, made from `was` (the labels their
    card showed picked). Only what they changed is applied: another person's label added meanwhile
    (at the same moment on the same card, or with a command their card had not shown yet) is not
    taken off by someone who never saw it. Without `was`, the ticket's labels become `names`."""
    with ticket_transaction(ctx, number) as (session, ticket):
        current = {label.name for label in ticket.labels}
        wanted = set(names)
        before = current if was is None else set(was)
        added, removed = change_labels(
            session, ticket, sorted(wanted - before - current), sorted((before - wanted) & current), ctx.actor
        )
        now = sorted(label.name for label in ticket.labels)
    if not added and not removed:
        return CommandReply(f"#{number}'s labels are already like that: nothing changed.")
    shown = ", ".join(escape_mrkdwn(name) for name in now)
    return CommandReply(f"#{number}'s labels: {shown or 'none'}.")


def run_labels(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 0)
    with ctx.desk.db.read() as session:
        usage = [(label.name, label.color, count) for label, count in queries.label_usage(session)]
    if not usage:
        return CommandReply("No labels yet: define one with `/desk label-create &lt;name&gt; [color]`.")
    lines = [
        f"• {escape_mrkdwn(name)}" + (f" ({escape_mrkdwn(color)})" if color else "") + f" — {count} open"
        for name, color, count in usage
    ]
    return CommandReply("*Labels*\n" + "\n".join(lines))


def run_label_create(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 2)
    color = str(inv.args[1]) if len(inv.args) > 1 else None
    with ctx.desk.db.transaction() as session:
        label = create_label(session, str(inv.args[0]), color)
        name, color = label.name, label.color
    # The color is said back: a second word typed as part of the name ("two words") is taken as
    # the color, and the answer is where the person sees that.
    shown = escape_mrkdwn(name) + (f" ({escape_mrkdwn(color)})" if color else "")
    return CommandReply(f"Created the label {shown}: add it with `/desk label &lt;n&gt; +{name}`.")


VERBS = (
    Verb("label", run_label, "+a -b"),
    Verb("labels", run_labels, takes_ticket=False),
    Verb("label-create", run_label_create, "<name> [color]", takes_ticket=False, aliases=("create-label",)),
)
