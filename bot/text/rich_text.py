"""Slack ``rich_text`` blocks (what every human-written Slack message carries) to canonical Markdown.

Element shapes follow Slack's Block Kit reference: ``rich_text_section``, ``rich_text_list``
(``style`` bullet/ordered, ``indent`` 0-8, ``offset``, ``border``), ``rich_text_preformatted``,
``rich_text_quote``; inline ``text`` (``style`` bold/italic/strike/code), ``link``, ``user``,
``usergroup``, ``channel``, ``broadcast``, ``emoji`` (``name``, hex ``unicode``), ``date``,
``color``. Slack sends a nested list as a flat run of lists with growing ``indent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from bot.text.dates import format_slack_date
from bot.text.emoji import emoji_character, emoji_from_codepoints
from bot.text.inline import Run, render_line
from bot.text.markdown import code_fence, code_span, escape_markdown, markdown_link
from bot.text.resolver import MentionResolver

HARD_BREAK = "  \n"
Element = dict[str, Any]


def _styles(element: Element) -> tuple[frozenset[str], bool]:
    style = element.get("style") or {}
    if not isinstance(style, dict):
        return frozenset(), False
    flags = frozenset(name for name in ("bold", "italic", "strike") if style.get(name))
    return flags, bool(style.get("code"))


def _emoji_text(element: Element) -> str:
    name = str(element.get("name", ""))
    if element.get("skin_tone") and "::skin-tone-" not in name:
        name = f"{name}::skin-tone-{element['skin_tone']}"
    from_unicode = emoji_from_codepoints(str(element["unicode"])) if element.get("unicode") else None
    return from_unicode or emoji_character(name) or f":{name}:"


def _date_text(element: Element) -> str:
    if element.get("fallback"):
        return str(element["fallback"])
    return format_slack_date(element.get("timestamp", 0), str(element.get("format") or "{date_num} {time}"))


def element_text(element: Element, resolver: MentionResolver) -> str:
    """The plain words an inline element stands for (a mention's name, an emoji's character)."""
    match element.get("type"):
        case "text":
            return str(element.get("text", ""))
        case "link":
            return str(element.get("text") or element.get("url", ""))
        case "user":
            return "@" + resolver.user_name(str(element.get("user_id", "")))
        case "usergroup":
            return "@" + resolver.usergroup_handle(str(element.get("usergroup_id", ""))).lstrip("@")
        case "channel":
            return "#" + resolver.channel_name(str(element.get("channel_id", ""))).lstrip("#")
        case "broadcast":
            return "@" + str(element.get("range", "here"))
        case "emoji":
            return _emoji_text(element)
        case "date":
            return _date_text(element)
        case "color":
            return str(element.get("value", ""))
        case _:
            # Newer element kinds (team, canvas, …) still say something readable when they can.
            return str(element.get("text") or element.get("fallback") or "")


def _link_run(element: Element, styles: frozenset[str], code: bool) -> Run:
    url = str(element.get("url", ""))
    label = str(element.get("text") or "").replace("\n", " ")
    label_markdown = code_span(label or url) if code else escape_markdown(label)
    return Run(label or url, styles, markdown=markdown_link(label_markdown, url))


def _runs(elements: Iterable[Element], resolver: MentionResolver) -> Iterator[Run | None]:
    """Runs of one section; ``None`` marks a line break."""
    for element in elements:
        styles, code = _styles(element)
        kind = element.get("type")
        if kind == "link":
            yield _link_run(element, styles, code)
            continue
        text = element_text(element, resolver)
        if kind != "text":
            # Names and characters are literal text too: a name with "_" must not italicise.
            words = text.replace("\n", " ")
            if code:
                # Part of the code span around it: two spans side by side would fuse into one
                # showing stray backticks.
                yield Run(words, styles, code=True)
            else:
                yield Run(words, styles, markdown=escape_markdown(words))
            continue
        for index, piece in enumerate(text.split("\n")):
            if index:
                yield None
            if piece:
                yield Run(piece, styles, code=code)


def inline_lines(elements: Iterable[Element], resolver: MentionResolver) -> list[str]:
    """A section's elements as Markdown lines; an empty string is a blank line."""
    lines: list[str] = []
    current: list[Run] = []
    for run in _runs(elements, resolver):
        if run is None:
            lines.append(render_line(current))
            current = []
        else:
            current.append(run)
    lines.append(render_line(current))
    return lines


def paragraphs(lines: list[str]) -> str:
    """Lines joined as Slack shows them: a newline is a hard break, a blank line a new paragraph."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return "\n\n".join(HARD_BREAK.join(block) for block in blocks if block)


def _quote(markdown: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in markdown.split("\n"))


def _preformatted(element: Element, resolver: MentionResolver) -> str:
    parts = []
    for child in element.get("elements", []):
        text = element_text(child, resolver)
        url = str(child.get("url", ""))
        if child.get("type") == "link" and child.get("text") and child.get("text") != url:
            text = f"{child['text']} ({url})"
        parts.append(text)
    return code_fence("".join(parts), str(element.get("language") or ""))


def _lists(lists: list[Element], resolver: MentionResolver) -> str:
    """Consecutive ``rich_text_list`` elements as one nested Markdown list.

    Each level is indented to the content column of its parent item (2 for ``- ``, 3 or more for
    ``1. ``), which is what CommonMark needs to nest; a level cannot be skipped.
    """
    lines: list[str] = []
    widths: list[int] = []
    for rich_list in lists:
        level = min(int(rich_list.get("indent") or 0), len(widths))
        ordered = rich_list.get("style") == "ordered"
        first_number = int(rich_list.get("offset") or 0) + 1
        if ordered and first_number != 1 and level > 0 and lines:
            # CommonMark lets only a list starting at 1 interrupt the parent item's line: any other
            # number would read as words run into that line. After a blank line it nests at any
            # number (the enclosing list becomes a loose one, spaced a little wider).
            lines.append("")
        for position, item in enumerate(rich_list.get("elements", [])):
            del widths[level:]
            indent = " " * sum(widths)
            marker = f"{first_number + position}." if ordered else "-"
            item_lines = [line for line in inline_lines(item.get("elements", []), resolver) if line.strip()]
            continuation = HARD_BREAK + indent + " " * (len(marker) + 1)
            lines.append(f"{indent}{marker} {continuation.join(item_lines)}".rstrip(" ") or marker)
            widths.append(len(marker) + 1)
    markdown = "\n".join(lines)
    return _quote(markdown) if lists and lists[0].get("border") else markdown


def _rich_text(elements: list[Element], resolver: MentionResolver) -> list[str]:
    parts: list[str] = []
    index = 0
    while index < len(elements):
        element = elements[index]
        kind = element.get("type")
        if kind == "rich_text_list":
            group = [element]
            while (
                index + 1 < len(elements)
                and elements[index + 1].get("type") == "rich_text_list"
                and bool(elements[index + 1].get("border")) == bool(element.get("border"))
            ):
                index += 1
                group.append(elements[index])
            parts.append(_lists(group, resolver))
        elif kind == "rich_text_preformatted":
            parts.append(_preformatted(element, resolver))
        elif kind == "rich_text_quote":
            parts.append(_quote(paragraphs(inline_lines(element.get("elements", []), resolver))))
        elif kind == "rich_text_section":
            parts.append(paragraphs(inline_lines(element.get("elements", []), resolver)))
        index += 1
    return parts


def _text_object(text: Any, resolver: MentionResolver) -> str:
    from bot.text.mrkdwn import mrkdwn_to_markdown  # mrkdwn sits beside this module, used rarely

    if not isinstance(text, dict):
        return ""
    if text.get("type") == "mrkdwn":
        return mrkdwn_to_markdown(str(text.get("text", "")), resolver)
    return paragraphs(
        [escape_markdown(line, line_start=True) for line in str(text.get("text", "")).split("\n")]
    )


def _layout_block(block: Element, resolver: MentionResolver) -> list[str]:
    """Bots post section/header/context blocks instead of rich text; keep their words."""
    match block.get("type"):
        case "section":
            return [_text_object(block.get("text"), resolver)] + [
                _text_object(field, resolver) for field in block.get("fields", [])
            ]
        case "header":
            title = _text_object(block.get("text"), resolver)
            return [f"**{title}**"] if title else []
        case "context":
            return [" ".join(_text_object(element, resolver) for element in block.get("elements", []))]
    return []


def rich_text_to_markdown(blocks: list[dict[str, Any]], resolver: MentionResolver) -> str:
    """A Slack message's ``blocks`` as canonical Markdown (CommonMark + ``~~strike~~``)."""
    parts: list[str] = []
    for block in blocks:
        if block.get("type") == "rich_text":
            parts.extend(_rich_text(block.get("elements", []), resolver))
        else:
            parts.extend(_layout_block(block, resolver))
    return "\n\n".join(part for part in parts if part.strip())
