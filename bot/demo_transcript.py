"""The demo's transcript: Slack threads as people see them, emails with the headers that matter.

Pure functions from what the emulator and the mail sink recorded to lines of text. Slack's
markup is shown the way a Slack client shows it: people by name, links by their label, dates by
their fallback text, blocks as their words (controls as `[Status: Open]`), reactions as emoji.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

from bot.text.emoji import emoji_character
from sandbox.mail_sink import ReceivedMail
from sandbox.state import Message
from sandbox.workspace import Workspace

INDENT = "    "
EMAIL_HEADERS = ("From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "Reply-To", "Auto-Submitted")
MAX_BODY_LINES = 40

_ANGLE = re.compile(r"<([^<>]+)>")
_DATE = re.compile(r"^!date\^[^|]*\|(.*)$")


def plain_text(text: str, workspace: Workspace) -> str:
    """Slack mrkdwn's `<…>` items as a Slack client shows them, then its three entities."""

    def shown(match: re.Match[str]) -> str:
        inside = match.group(1)
        target, _, label = inside.partition("|")
        date = _DATE.match(inside)
        if date:
            return date.group(1)
        if target.startswith("@"):
            user = workspace.users.get(target[1:])
            return "@" + (label or (user.display_name or user.real_name if user else target[1:]))
        if target.startswith("#"):
            channel = workspace.channels.get(target[1:])
            return "#" + (label or (channel.name if channel else target[1:]))
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        if target.startswith("mailto:"):
            return label or target.removeprefix("mailto:")
        return f"{label} ({target})" if label and label != target else target

    text = _ANGLE.sub(shown, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def author(message: Message, workspace: Workspace) -> str:
    """The name Slack shows above a message; an app posting under a person's name says so."""
    if message.username:
        return f"{message.username} (app)"
    user = workspace.users.get(message.user)
    if user is None:
        return message.user or "?"
    return user.display_name or user.real_name


def _element_text(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "button":
        return f"[{element.get('text', {}).get('text', '')}]"
    if kind in ("static_select", "users_select", "multi_static_select", "overflow"):
        chosen = element.get("initial_option") or {}
        initial = chosen.get("text", {}).get("text")
        if element.get("initial_user"):
            initial = f"<@{element['initial_user']}>"
        chosen_many = element.get("initial_options") or []
        if chosen_many:
            initial = ", ".join(option["text"]["text"] for option in chosen_many)
        placeholder = element.get("placeholder", {}).get("text", "…")
        return f"[{placeholder}: {initial}]" if initial else f"[{placeholder} ▾]"
    return str(element.get("text", "")) if isinstance(element.get("text"), str) else ""


def block_lines(blocks: Iterable[dict[str, Any]]) -> list[str]:
    """Blocks as the words a person reads in them (mrkdwn still raw; see plain_text)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            text = block.get("text") or {}
            if text.get("text"):
                lines.extend(str(text["text"]).splitlines())
            for field in block.get("fields") or []:
                lines.append(str(field.get("text", "")))
        elif kind == "context":
            parts = [str(e.get("text", e.get("alt_text", ""))) for e in block.get("elements", [])]
            lines.append(" · ".join(part for part in parts if part))
        elif kind == "actions":
            lines.append(" ".join(filter(None, (_element_text(e) for e in block.get("elements", [])))))
        elif kind == "divider":
            lines.append("─" * 20)
    return lines


def message_lines(message: Message, workspace: Workspace, files: dict[str, Any]) -> list[str]:
    """One Slack message: its author, words, files and reactions."""
    is_bot_card = (
        message.bot_id is not None and message.blocks and message.blocks[0].get("type") != "rich_text"
    )
    body = block_lines(message.blocks or []) if is_bot_card else message.text.splitlines()
    head = author(message, workspace)
    if message.deleted:
        head += " (deleted)"
    elif message.edited:
        head += f" (edited{f' {len(message.previous_texts)}×' if len(message.previous_texts) > 1 else ''})"
    lines = [head]
    lines += [INDENT + plain_text(line, workspace) for line in body]
    for file_id in message.files:
        file = files.get(file_id)
        if file is not None:
            lines.append(f"{INDENT}📎 {file.name} ({file.mimetype}, {len(file.content):,} bytes)")
    if message.reactions:
        shown = []
        for name, users in message.reactions.items():
            who = ", ".join(
                (u.display_name or u.real_name) if (u := workspace.users.get(uid)) else uid for uid in users
            )
            shown.append(f"{emoji_character(name) or ':' + name + ':'} {name} by {who}")
        lines.append(INDENT + "   ".join(shown))
    return lines


def thread_lines(thread: list[Message], workspace: Workspace, files: dict[str, Any]) -> list[str]:
    """A thread: the parent, then each reply indented under it."""
    lines: list[str] = []
    for position, message in enumerate(thread):
        rendered = message_lines(message, workspace, files)
        prefix = "" if position == 0 else "  ↳ "
        pad = "" if position == 0 else "    "
        lines.append(prefix + rendered[0])
        lines.extend(pad + line for line in rendered[1:])
    return lines


def text_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return "(no text part)"
    content = body.get_content()
    return content if isinstance(content, str) else "(undecodable text part)"


def email_lines(mail: ReceivedMail) -> list[str]:
    """One email as received by the relay: the headers that matter, attachments, the text part."""
    message = mail.message
    # A long header arrives folded; read back, it keeps the fold's leading space ("In-Reply-To:  <…>").
    lines = [
        f"{name}: {' '.join(str(message[name]).split())}"
        for name in EMAIL_HEADERS
        if message[name] is not None
    ]
    lines.append(f"(envelope: from {mail.mail_from or '<>'} to {', '.join(mail.rcpt_tos)})")
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        lines.append(f"📎 {part.get_filename()} ({part.get_content_type()}, {size:,} bytes)")
    body = text_part(message).rstrip().splitlines()
    if len(body) > MAX_BODY_LINES:
        body = [*body[:MAX_BODY_LINES], f"[… {len(body) - MAX_BODY_LINES} more lines]"]
    lines.append("")
    lines.extend(INDENT + line for line in body)
    return lines


def rule(title: str, width: int = 78) -> str:
    head = f"── {title} "
    return head + "─" * max(3, width - len(head))
