"""Canonical Markdown to Slack mrkdwn, and into postable messages within Slack's limits.

Used for customer text posted into a ticket's triage thread, and for staff replies posted into a
customer's Slack thread. Parsing is markdown-it's (CommonMark + strikethrough + tables), so what
Slack shows matches what the email side renders from the same Markdown.

Messages use ``section`` blocks with mrkdwn, not Slack's ``markdown`` block: see
docs/slack-formatting.md for the limits and the reasons.
"""

from __future__ import annotations

from typing import TypedDict

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.text.split import pack_messages, split_unit

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
_BULLETS = ("•", "◦", "▪")
LIST_INDENT = "    "


class SlackMessagePayload(TypedDict):
    """Keyword arguments for ``chat.postMessage`` / ``chat.update`` besides the channel."""

    text: str
    blocks: list[dict[str, object]]


def escape_mrkdwn(text: str) -> str:
    """Text made literal for Slack: its three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_url(url: str) -> str:
    # Inside <url|label> a "|" or ">" would end the URL early; "&" is written as Slack writes it.
    return escape_mrkdwn(url).replace("|", "%7C").replace("&gt;", "%3E").replace("&lt;", "%3C")


def _plain_words(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    if node.type == "image":
        return node.content or ""
    return "".join(_plain_words(child) for child in node.children)


def _inline(node: SyntaxTreeNode, *, in_bold: bool = False) -> str:
    parts: list[str] = []
    for child in node.children:
        match child.type:
            case "text" | "html_inline":
                parts.append(escape_mrkdwn(child.content))
            case "softbreak" | "hardbreak":
                # A soft break is a newline the author typed: Slack shows it, as the email's
                # sender saw it (mail keeps its line structure).
                parts.append("\n")
            case "code_inline":
                parts.append(f"`{escape_mrkdwn(child.content)}`")
            case "strong":
                inner = _inline(child, in_bold=True)
                parts.append(inner if in_bold or not inner.strip() else f"*{inner}*")
            case "em":
                inner = _inline(child, in_bold=in_bold)
                parts.append(f"_{inner}_" if inner.strip() else inner)
            case "s":
                inner = _inline(child, in_bold=in_bold)
                parts.append(f"~{inner}~" if inner.strip() else inner)
            case "link":
                parts.append(_link(child))
            case "image":
                url = str(child.attrs.get("src", ""))
                label = escape_mrkdwn(_plain_words(child)).replace("\n", " ") or url
                parts.append(f"<{_link_url(url)}|{label}>" if url else label)
            case _:
                parts.append(_inline(child, in_bold=in_bold))
    return "".join(parts)


def _link(node: SyntaxTreeNode) -> str:
    url = str(node.attrs.get("href", ""))
    label = _plain_words(node).replace("\n", " ").strip()
    if not url:
        return escape_mrkdwn(label)
    if not label or label == url:
        return f"<{_link_url(url)}>"
    return f"<{_link_url(url)}|{escape_mrkdwn(label)}>"


def _code_lines(content: str) -> list[str]:
    return ["```", *escape_mrkdwn(content.removesuffix("\n")).split("\n"), "```"]


def _list_lines(node: SyntaxTreeNode, depth: int) -> list[str]:
    lines: list[str] = []
    start = int(node.attrs.get("start", 1)) if node.type == "ordered_list" else 1
    for position, item in enumerate(node.children):
        marker = f"{start + position}." if node.type == "ordered_list" else _BULLETS[depth % len(_BULLETS)]
        indent = LIST_INDENT * depth
        item_lines = _blocks(item.children, depth + 1)
        first, *rest = item_lines or [""]
        lines.append(f"{indent}{marker} {first}".rstrip())
        # Continuation lines of the item line up with its text; nested lists carry their own indent.
        lines.extend(
            line if line.startswith(LIST_INDENT * (depth + 1)) else f"{indent}  {line}" for line in rest
        )
    return lines


def _table_lines(node: SyntaxTreeNode) -> list[str]:
    lines = []
    for section in node.children:
        for row in section.children:
            cells = [_inline(cell.children[0]) if cell.children else "" for cell in row.children]
            line = " | ".join(cell.strip() for cell in cells)
            lines.append(f"*{line}*" if section.type == "thead" and line.strip() else line)
    return lines


def _block_lines(node: SyntaxTreeNode, depth: int) -> list[str]:
    match node.type:
        case "paragraph":
            return _inline(node.children[0]).split("\n") if node.children else []
        case "heading":
            title = _inline(node.children[0], in_bold=True).replace("\n", " ") if node.children else ""
            return [f"*{title}*"] if title.strip() else []
        case "bullet_list" | "ordered_list":
            return _list_lines(node, depth)
        case "blockquote":
            return [f"> {line}" if line else ">" for line in _blocks(node.children, depth)]
        case "fence" | "code_block":
            return _code_lines(node.content)
        case "hr":
            return ["───────"]
        case "html_block":
            return escape_mrkdwn(node.content.removesuffix("\n")).split("\n")
        case "table":
            return _table_lines(node)
    return []


def _blocks(nodes: list[SyntaxTreeNode], depth: int) -> list[str]:
    """Block nodes as lines; inside a list (depth > 0) paragraphs are not spaced apart."""
    lines: list[str] = []
    for node in nodes:
        block = _block_lines(node, depth)
        if not block:
            continue
        if lines and depth == 0:
            lines.append("")
        lines.extend(block)
    return lines


def _units(markdown: str) -> list[tuple[str, bool]]:
    """Top-level blocks as (mrkdwn, is_code_block): the units messages are split between."""
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    units = []
    for node in root.children:
        lines = _block_lines(node, 0)
        if lines:
            units.append(("\n".join(lines), node.type in ("fence", "code_block")))
    return units


def markdown_to_mrkdwn(markdown: str) -> str:
    """Canonical Markdown as Slack mrkdwn text."""
    return "\n\n".join(text for text, _ in _units(markdown))


def message_payloads(markdown: str, *, header: str | None = None) -> list[SlackMessagePayload]:
    """``markdown`` as one or more Slack messages, each within Slack's limits.

    ``header`` is mrkdwn (escape user text with :func:`escape_mrkdwn`), shown as a context line
    on the first message only, e.g. who wrote the message. Long content is split between
    paragraphs, then between lines, never inside a link token or an entity; a code block split
    in two is closed and reopened. Empty content without a header gives no message.
    """
    pieces: list[str] = []
    for text, is_code in _units(markdown):
        pieces.extend(split_unit(text, is_code=is_code))
    return [SlackMessagePayload(text=text, blocks=blocks) for text, blocks in pack_messages(pieces, header)]
