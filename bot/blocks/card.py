"""The card: a ticket's root message in the triage channel, updated in place on every change.

It shows number, subject, requester, status, priority, assignee and labels as words (operators
and tests read them), with menus to change them. Every control's block_id carries the ticket
number, so an action handler knows its ticket from the payload alone.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from bot.blocks.data import PRIORITIES, STATUSES, CardView, TicketLinkView
from bot.blocks.format import ELLIPSIS, link_words, ordinal, slack_date, truncate, user_mention, word
from bot.text import escape_mrkdwn, slack_link

ACTION_STATUS = "ticket_status"
ACTION_PRIORITY = "ticket_priority"
ACTION_ASSIGNEE = "ticket_assignee"
ACTION_LABELS = "ticket_labels"

HEADER_LIMIT = 150  # header block text
SECTION_LIMIT = 3000
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150
MAX_OPTIONS = 100  # options in a select, and option groups in one
MAX_LIST_SECTIONS = 15  # sections for labels, and again for links: a message holds 50 blocks
REQUESTER_LIMIT = 1200
ORIGIN_LIMIT = 600

PLACEHOLDER_ASSIGNEE = "Assign to…"
PLACEHOLDER_LABELS = "Add labels…"
# Slack mrkdwn: `<name>` unescaped would be taken for a link and shown as "name".
NO_LABELS_HINT = "No labels defined yet: create one with `/desk label-create &lt;name&gt;`."
MERGED_BANNER = (
    ":twisted_rightwards_arrows: *Merged into #{target}*: this ticket is closed; continue in #{target}."
)
REPEAT_NOTE = ":repeat: {nth} ticket in 30 days from this requester"
OPENED_NOTE = "Opened {date}"
# On a card posted again in its thread, because the one the thread hangs from was deleted in Slack.
IN_THREAD_NOTE = "The card at the top of this thread was deleted; this one is kept up to date instead"
ORIGIN_WORDS = {"email": "Email", "slack": "Slack", "web": "Web form", "staff": "Opened by staff"}

_BLOCK_ID = re.compile(r"^ticket:(\d+)(?::|$)")


def block_id(number: int, part: str, version: str = "") -> str:
    """``ticket:42:controls`` (with a version suffix that changes with the card's state)."""
    return f"ticket:{number}:{part}" + (f":{version}" if version else "")


def parse_ticket_number(block_id: str) -> int | None:
    """The ticket number a card's block_id carries, or None for any other block."""
    match = _BLOCK_ID.match(block_id or "")
    return int(match.group(1)) if match else None


def _state_version(view: CardView) -> str:
    # Slack clients keep a select's shown value per block_id: when the state changes the
    # controls get a new block_id, so an update in place shows the new initial options.
    state = (
        f"{view.status}|{view.priority}|{view.assignee_user_id}|{','.join(view.labels)}|{view.merged_into}"
    )
    return hashlib.sha1(state.encode(), usedforsecurity=False).hexdigest()[:8]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _plain(truncate(label, OPTION_TEXT_LIMIT)), "value": value}


def link_text(link: TicketLinkView) -> str:
    """``#17 (blocks)`` for a ticket; ``github.com #9`` (linked) for an issue elsewhere."""
    kind = word(link.kind).lower()
    if link.target_number is not None:
        return f"#{link.target_number} ({kind})"
    if link.url:
        shown = slack_link(link.url, link_words(link.url))
        return shown if link.kind == "relates" else f"{shown} ({kind})"
    return ""


def requester_text(view: CardView) -> str:
    who = escape_mrkdwn(view.requester_name)
    if view.requester_contact and view.requester_contact != view.requester_name:
        who += f" ({escape_mrkdwn(view.requester_contact)})"
    if view.organization:
        who += f" · {escape_mrkdwn(view.organization)}"
    return who


def origin_text(view: CardView) -> str:
    return escape_mrkdwn(view.origin_label or ORIGIN_WORDS.get(view.origin, word(view.origin)))


def labels_text(labels: tuple[str, ...]) -> str:
    return ", ".join(escape_mrkdwn(label) for label in labels) if labels else "None"


def _whole_line(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, never inside an entity (``&amp;``) or a ``<…>`` token."""
    if len(text) <= limit:
        return text
    cut = limit - 1
    for opener in ("&", "<"):
        at = text.rfind(opener, max(0, cut - 600 if opener == "<" else cut - 5), cut)
        closer = ";" if opener == "&" else ">"
        if at >= 0 and text.find(closer, at, cut) < 0:
            cut = at
    return text[:cut].rstrip() + ELLIPSIS


def _facts_lines(view: CardView) -> list[str]:
    # Names people chose are bounded, so the state line always shows however long they are.
    return [
        _whole_line(f"Requester: {requester_text(view)}", REQUESTER_LIMIT),
        _whole_line(f"Via: {origin_text(view)}", ORIGIN_LIMIT),
        f"Status: {word(view.status)} · Priority: {word(view.priority)} · "
        f"Assignee: {user_mention(view.assignee_user_id)}",
    ]


def _facts(view: CardView) -> tuple[str, list[str]]:
    """The facts section (requester, origin, state and, when they fit, the labels) and the label
    sections of their own when they do not."""
    lines = _facts_lines(view)
    labels = f"Labels: {labels_text(view.labels)}"
    if sum(len(line) + 1 for line in lines) + len(labels) <= SECTION_LIMIT:
        return "\n".join([*lines, labels]), []
    own = _packed("Labels: ", [escape_mrkdwn(label) for label in view.labels], MAX_LIST_SECTIONS)
    return "\n".join(lines), own


def _packed(prefix: str, items: list[str], max_sections: int) -> list[str]:
    """``prefix`` and ``items`` joined by commas into texts of at most a section each, every item
    whole (one cut inside a ``<url|words>`` would show as raw markup, and the rest be lost); past
    ``max_sections``, ``…and N more``."""
    sections: list[list[str]] = []
    size = 0
    for index, item in enumerate(items):
        if sections and size + 2 + len(item) <= SECTION_LIMIT:
            sections[-1].append(item)
            size += 2 + len(item)
            continue
        if len(sections) == max_sections:
            last = sections[-1]
            left = len(items) - index
            while len(last) > 1 and size + len(f", …and {left} more") > SECTION_LIMIT:
                size -= 2 + len(last.pop())
                left += 1
            last.append(f"…and {left} more")
            break
        first = (prefix if not sections else "") + item
        sections.append([first])
        size = len(first)
    return [", ".join(section) for section in sections]


def _links_sections(view: CardView) -> list[str]:
    """``Links: …``, each link whole, in sections of their own."""
    shown: list[str] = []
    for link in view.links:
        text = link_text(link)
        if len(text) > SECTION_LIMIT // 2:
            # A URL too long to link in a section: its words alone.
            text = escape_mrkdwn(link_words(link.url or ""))
        if text:
            shown.append(text)
    return _packed("Links: ", shown, MAX_LIST_SECTIONS)


def _label_select(view: CardView) -> dict[str, Any] | None:
    names = list(dict.fromkeys((*view.labels, *view.available_labels)))
    names = [name for name in names if 0 < len(name) <= OPTION_VALUE_LIMIT][: MAX_OPTIONS * MAX_OPTIONS]
    if not names:
        return None  # Slack rejects a static select without options
    element: dict[str, Any] = {
        "type": "multi_static_select",
        "action_id": ACTION_LABELS,
        "placeholder": _plain(PLACEHOLDER_LABELS),
    }
    if len(names) <= MAX_OPTIONS:
        element["options"] = [_option(name, name) for name in names]
    else:
        # Slack allows 100 options in a menu, or 100 groups of 100: every label stays reachable
        # (a label left out could not be picked, and one the ticket has would be dropped when the
        # menu sends the whole choice).
        chunks = [names[start : start + MAX_OPTIONS] for start in range(0, len(names), MAX_OPTIONS)]
        element["option_groups"] = [
            {
                "label": _plain(truncate(f"{chunk[0]} – {chunk[-1]}", OPTION_TEXT_LIMIT)),
                "options": [_option(name, name) for name in chunk],
            }
            for chunk in chunks
        ]
    initial = [_option(name, name) for name in view.labels if name in names]
    if initial:
        element["initial_options"] = initial
    return element


def _controls(view: CardView) -> list[dict[str, Any]]:
    status = [_option(word(value), value) for value in STATUSES]
    priority = [_option(word(value), value) for value in PRIORITIES]
    elements: list[dict[str, Any]] = [
        {
            "type": "static_select",
            "action_id": ACTION_STATUS,
            "placeholder": _plain("Status"),
            "options": status,
            **(
                {"initial_option": _option(word(view.status), view.status)} if view.status in STATUSES else {}
            ),
        },
        {
            "type": "static_select",
            "action_id": ACTION_PRIORITY,
            "placeholder": _plain("Priority"),
            "options": priority,
            **(
                {"initial_option": _option(word(view.priority), view.priority)}
                if view.priority in PRIORITIES
                else {}
            ),
        },
        {
            "type": "users_select",
            "action_id": ACTION_ASSIGNEE,
            "placeholder": _plain(PLACEHOLDER_ASSIGNEE),
            **({"initial_user": view.assignee_user_id} if view.assignee_user_id else {}),
        },
    ]
    labels = _label_select(view)
    if labels:
        elements.append(labels)
    return elements


def card_title(view: CardView) -> str:
    return truncate(f"#{view.number} {view.subject.strip() or '(no subject)'}", HEADER_LIMIT)


def card_blocks(view: CardView, *, in_thread: bool = False) -> list[dict[str, Any]]:
    """The card's blocks: title, merged banner, facts, context, controls. `in_thread`: the card
    posted again in its thread (the one at the top was deleted), which says so."""
    number = view.number
    version = _state_version(view)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": block_id(number, "title"), "text": _plain(card_title(view))}
    ]
    if view.merged_into is not None:
        banner = MERGED_BANNER.format(target=view.merged_into)
        blocks.append(
            {
                "type": "section",
                "block_id": block_id(number, "merged"),
                "text": {"type": "mrkdwn", "text": banner},
            }
        )
    facts, label_sections = _facts(view)
    blocks.append(
        {
            "type": "section",
            "block_id": block_id(number, "facts", version),
            "text": {"type": "mrkdwn", "text": facts},
        }
    )
    for part, texts in (("labels", label_sections), ("links", _links_sections(view))):
        for index, text in enumerate(texts):
            blocks.append(
                {
                    "type": "section",
                    "block_id": block_id(number, f"{part}-{index}", version),
                    "text": {"type": "mrkdwn", "text": text},
                }
            )
    context = [OPENED_NOTE.format(date=slack_date(view.created_at))]
    if view.repeat_requests_30d >= 2:
        context.append(REPEAT_NOTE.format(nth=ordinal(view.repeat_requests_30d)))
    if in_thread:
        context.append(IN_THREAD_NOTE)
    blocks.append(
        {
            "type": "context",
            "block_id": block_id(number, "context"),
            "elements": [{"type": "mrkdwn", "text": text} for text in context],
        }
    )
    if view.merged_into is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": block_id(number, "controls", version),
                "elements": _controls(view),
            }
        )
        if _label_select(view) is None:
            blocks.append(
                {
                    "type": "context",
                    "block_id": block_id(number, "labels-hint"),
                    "elements": [{"type": "mrkdwn", "text": NO_LABELS_HINT}],
                }
            )
    return blocks


def card_text(view: CardView) -> str:
    """The card's notification fallback (the message ``text``)."""
    parts = [
        escape_mrkdwn(card_title(view)),
        f"Status: {word(view.status)}",
        f"Priority: {word(view.priority)}",
        f"Assignee: {user_mention(view.assignee_user_id)}",
        f"Labels: {labels_text(view.labels)}",
    ]
    if view.merged_into is not None:
        parts.append(f"Merged into #{view.merged_into}")
    return " · ".join(parts)
