"""Canonical Markdown to Slack mrkdwn, and into postable messages within Slack's limits.

Used for customer text posted into a ticket's triage thread, and for staff replies posted into a
customer's Slack thread. Parsing is markdown-it's (CommonMark + strikethrough + tables), so what
Slack shows matches what the email side renders from the same Markdown.

Messages use ``section`` blocks with mrkdwn, not Slack's ``markdown`` block: see
docs/slack-formatting.md for the limits and the reasons.
"""

from __future__ import annotations

import re
from typing import TypedDict
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.text.split import pack_messages, split_unit

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
_BULLETS = ("•", "◦", "▪")
LIST_INDENT = "    "
# The schemes a link may have in Slack (the HTML intake keeps these and cid:, which Slack cannot open).
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
# Letters of any script: an international domain (`münchen.de`, or a look-alike `pаypal.com` with a
# Cyrillic `а`) names a place as much as an ASCII one.
_DOMAIN = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,63}\.?(?:[:/?#]|$)")
_EMAIL_ADDRESS = re.compile(r"^[^\s@/:<>]+@[^\s@/:<>]+\.[^\s@/:<>]+$")
# A label such as `report.docx` is a file's name, not a domain (though some of these are TLDs too).
_FILE_NAME = re.compile(
    r"\.(?:pdf|docx?|xlsx?|pptx?|od[st]|txt|csv|log|json|xml|ya?ml|md|html?|png|jpe?g|gif|svg|webp|heic"
    r"|mp[34]|mov|avi|wav|zip|tar|t?gz|7z|rar|eml|msg|ics|vcf|js|ts|py|java|go|rb|sh|sql)$"
)


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


def is_link_url(url: str) -> bool:
    """``url`` is absolute, with a scheme Slack may link (http and https with a host, mailto, tel).

    Anything else inside ``<…>`` is Slack syntax, not a link: ``<!channel>`` pings everyone,
    ``<@U…>`` and ``<#C…>`` are mentions, ``<!subteam^…>`` a group ping.
    """
    if not url or re.search(r"[\s\x00-\x1f\x7f]", url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # a broken [IPv6] host
        return False
    scheme = parts.scheme.lower()
    if scheme not in LINK_SCHEMES or not url[len(scheme) + 1 :]:
        return False
    return bool(parts.hostname) if scheme in ("http", "https") else True


def _host(host: str) -> str:
    """A host as one spelling: an international domain in its `xn--` form, as links carry it."""
    host = host.rstrip(".").removeprefix("www.")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid domain name: compared as written
        return host


def _destination(url: str) -> str:
    """Where a link (:func:`is_link_url`) goes, as :func:`_named_place` names places."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _host(parts.hostname or "")
    return f"{scheme}:{unquote(parts.path).lower()}"


def _named_place(label: str) -> str | None:
    """Where a link's label says the link goes when the label reads as an address: the host of
    a URL or a domain, or ``mailto:`` and an email address; None for words."""
    words = label.strip("()[]{}<>\"'.,;:!? ").lower()
    if not words or re.search(r"\s", words):
        return None
    address = words.removeprefix("mailto:").split("?")[0]
    if _EMAIL_ADDRESS.match(address):
        return "mailto:" + address
    if not _SCHEME.match(words):
        # `report.docx` is a file's name; `bank.example/report.docx` is an address.
        if not _DOMAIN.match(words) or ("/" not in words and _FILE_NAME.search(words)):
            return None
        words = "http://" + words
    try:
        host = urlsplit(words).hostname
    except ValueError:  # a broken [IPv6] host: it names no place a link could go
        return words
    return _host(host) if host else words


def slack_link(url: str, label: str = "", *, ours: bool = False) -> str:
    """A mrkdwn link to ``url`` showing ``label`` (plain text: escaped here).

    Only a real link (:func:`is_link_url`) is linked; for anything else the label, or the URL
    when there is none, is shown as text. A label naming another address than the link's
    (``https://bank.example``, or ``log in at bank.example``, on a link to ``evil.example``) is
    followed by the real URL, unless
    the link is ``ours`` (a ticket's thread, whose subject is the label): nobody is misled there.
    """
    label = label.replace("\n", " ").strip()
    if not is_link_url(url):
        return escape_mrkdwn(label or url)
    if not label or label == url:
        return f"<{_link_url(url)}>"
    destination = _destination(url)
    if not ours and any(place != destination for place in _named_places(label)):
        return f"{escape_mrkdwn(label)} (<{_link_url(url)}>)"
    return f"<{_link_url(url)}|{escape_mrkdwn(label)}>"


def _named_places(label: str) -> list[str]:
    """The places a label names: the whole label read as an address, else each of its words that
    reads as one (`log in at bank.example`, `https://bank.example/ now`)."""
    whole = _named_place(label)
    if whole is not None:
        return [whole]
    return [place for word in label.split() if (place := _named_place(word)) is not None]


def _plain_words(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    if node.type == "image":
        # The alt text parsed (its escapes undone), as a link's words are; the source if it has none.
        return "".join(_plain_words(child) for child in node.children) or node.content or ""
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
                parts.append(inner if in_bold else _emphasis(inner, "*"))
            case "em":
                parts.append(_emphasis(_inline(child, in_bold=in_bold), "_"))
            case "s":
                parts.append(_emphasis(_inline(child, in_bold=in_bold), "~"))
            case "link":
                parts.append(slack_link(str(child.attrs.get("href", "")), _plain_words(child)))
            case "image":
                parts.append(slack_link(str(child.attrs.get("src", "")), _plain_words(child)))
            case _:
                parts.append(_inline(child, in_bold=in_bold))
    return "".join(parts)


def _emphasis(inner: str, marker: str) -> str:
    """``inner`` between ``marker``s, line by line: Slack formats a pair only within one line, so
    `*a` and `b*` on two lines would show their asterisks. Markers hug the words, as Slack needs."""
    lines = []
    for line in inner.split("\n"):
        words = line.strip()
        if words:
            start = line.index(words)
            line = f"{line[:start]}{marker}{words}{marker}{line[start + len(words) :]}"
        lines.append(line)
    return "\n".join(lines)


# Three backticks end a Slack code block wherever they stand, and mrkdwn has no escape: inside a
# block, a zero-width space between backticks keeps them showing as typed.
_BACKTICK_RUN = re.compile(r"`{3,}")


def _code_lines(content: str) -> list[str]:
    code = _BACKTICK_RUN.sub(lambda run: "\u200b".join(run.group(0)), content.removesuffix("\n"))
    return ["```", *escape_mrkdwn(code).split("\n"), "```"]


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
            cells = [_inline(cell.children[0]).strip() if cell.children else "" for cell in row.children]
            if not any(cells):
                # An empty row, above all the header an HTML table without header cells gets
                # (Markdown tables must have one): it would show as a bare `* | *` line.
                continue
            line = " | ".join(cells)
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
