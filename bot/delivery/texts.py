"""Words the Slack performers post that are not built elsewhere: status notices for a customer's
Slack thread, and the header line of a message copied into the triage thread. Texts are constants;
names from people are escaped here."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.blocks.messages import NOTE_MARKER
from bot.text import escape_mrkdwn
from bot.text.markdown import escape_markdown

ORIGIN_NOTICES = {
    "resolved": "Ticket #{number} is resolved. Reply here if you still need help and we'll reopen it.",
    "closed": "Ticket #{number} is closed. Reply here if you need more help.",
    "reopened": "Ticket #{number} is open again — we'll reply here.",
    "merged": "Ticket #{number} was merged into #{target}; we'll continue there.",
    # Files the desk did not take (too large, too many in one message): the sender thinks we have them.
    "files_refused": "We could not receive {files} (too large, or too many in one message). "
    "Please send {them} another way, or as a link.",
}
GENERIC_NOTICE = "Ticket #{number} was updated: {template}."
SOURCE_WORDS = {"email": "by email", "slack": "in Slack", "web": "on the web form"}
CUSTOMER_HEADER = "*{name}*{contact} wrote {source}"
ORIGINAL_LINK = " · <{url}|original message>"
NOTE_HEADER = "{marker} *{name}*"
OVERFLOW_NOTE = "_…the edited text is longer than this copy can hold; the ticket keeps it in full._"
# A row whose text went up but whose files Slack refused for good: its error, and the thread's line.
FILES_REFUSED = "its text was posted, but not its files"
FILES_REFUSED_LINE = ":warning: The text reached {where}, but not its files{detail}."


def files_refused_line(where: str, detail: str) -> str:
    """The thread's line for a post whose text is up and whose files are not (`where`: the thread)."""
    return FILES_REFUSED_LINE.format(where=where, detail=escape_mrkdwn(detail))


def files_sent(names: list[str]) -> str:
    """Markdown naming the files of a staff reply that has no text."""
    what = "a file" if len(names) == 1 else f"{len(names)} files"
    return f"Sent {what}: " + ", ".join(escape_markdown(name) for name in names)


def empty_files_line(names: list[str]) -> str:
    """Markdown naming attachments with no content, which Slack cannot take."""
    what = "Empty attachment" if len(names) == 1 else "Empty attachments"
    return f"_{what}, not uploaded: " + ", ".join(escape_markdown(name) for name in names) + "_"


def origin_notice(template: str, number: int, target: int | None = None, files: Sequence[str] = ()) -> str:
    text = ORIGIN_NOTICES.get(template)
    if text is None:
        return GENERIC_NOTICE.format(number=number, template=escape_mrkdwn(template))
    return text.format(
        number=number,
        target=target if target is not None else "another ticket",
        files=", ".join(escape_mrkdwn(name) for name in files) or "a file",
        them="them" if len(files) > 1 else "it",
    )


def customer_header(name: str, email: str | None, source: str, original_url: str = "") -> str:
    """Who wrote, how, and (for an email, when the desk has a public URL) the original .eml."""
    contact = f" ({escape_mrkdwn(email)})" if email and email != name else ""
    header = CUSTOMER_HEADER.format(
        name=escape_mrkdwn(name or "The customer"), contact=contact, source=SOURCE_WORDS.get(source, "")
    ).rstrip()
    if original_url:
        header += ORIGINAL_LINK.format(url=escape_mrkdwn(original_url).replace("|", "%7C"))
    return header


def note_header(name: str) -> str:
    return NOTE_HEADER.format(marker=NOTE_MARKER, name=escape_mrkdwn(name or "Someone"))


def link_ticket_number(text: str, number: int, url: str) -> str:
    """A desk line with the ticket it names (`#17`, not the start of `#170`) as a link to `url`.

    The line begins with the name of whoever acted, which may hold a `#17` of its own; the ticket
    the line is about comes after it, so the last `#17` is the one linked."""
    found = list(re.finditer(rf"#{number}(?!\d)", text))
    if not found:
        return text
    last = found[-1]
    return f"{text[: last.start()]}<{url}|#{number}>{text[last.end() :]}"
