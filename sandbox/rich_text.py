"""Turn what a person types (Slack mrkdwn) into the `rich_text` block Slack attaches to their message.

Slack's clients send both: `text` as typed (mentions as `<@U…>`) and a `rich_text` block with the
structure (sections, lists, quotes, preformatted; bold, italic, strike, code; users, channels, links,
emoji). The product reads the block, so the emulator builds one that has the same shape.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

Element = dict[str, Any]

_INLINE = re.compile(
    r"<(?P<angle>[^<>\s][^<>]*)>"
    r"|`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>[^_\n]+)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>[^~\n]+)~(?![\w~])"
    r"|:(?P<emoji>[a-z0-9_+\-']+):"
)
_BULLET = re.compile(r"^(?P<indent>\s*)[-•*] (?P<body>.*)$")
_ORDERED = re.compile(r"^(?P<indent>\s*)\d+[.)] (?P<body>.*)$")
_QUOTE = re.compile(r"^(?:>|&gt;) ?(?P<body>.*)$")


def _unescape(text: str) -> str:
    """Slack escapes `&`, `<` and `>` in a message's `text` only; its rich text holds the characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(text: str, style: dict[str, bool]) -> Element:
    element: Element = {"type": "text", "text": _unescape(text)}
    if style:
        element["style"] = dict(style)
    return element


def _angle(inner: str, style: dict[str, bool]) -> Element:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return {"type": "user", "user_id": target[1:]}
    if target.startswith("#"):
        return {"type": "channel", "channel_id": target[1:]}
    if target.startswith("!"):
        name = target[1:]
        if name.startswith("subteam^"):
            return {"type": "usergroup", "usergroup_id": name.removeprefix("subteam^")}
        return {"type": "broadcast", "range": name}
    link: Element = {"type": "link", "url": _unescape(target)}
    if label:
        link["text"] = _unescape(label)
    if style:
        link["style"] = dict(style)
    return link


def parse_inline(text: str, style: dict[str, bool] | None = None) -> list[Element]:
    style = style or {}
    elements: list[Element] = []
    pos = 0
    for match in _INLINE.finditer(text):
        if match.start() > pos:
            elements.append(_text(text[pos : match.start()], style))
        pos = match.end()
        if match["angle"] is not None:
            elements.append(_angle(match["angle"], style))
        elif match["code"] is not None:
            elements.append(_text(match["code"], {**style, "code": True}))
        elif match["emoji"] is not None:
            elements.append({"type": "emoji", "name": match["emoji"]})
        else:
            kind = (
                "bold" if match["bold"] is not None else "italic" if match["italic"] is not None else "strike"
            )
            elements.extend(parse_inline(match[kind], {**style, kind: True}))
    if pos < len(text):
        elements.append(_text(text[pos:], style))
    return _merge_texts(elements)


def _merge_texts(elements: list[Element]) -> list[Element]:
    merged: list[Element] = []
    for element in elements:
        last = merged[-1] if merged else None
        if (
            last is not None
            and element["type"] == "text"
            and last["type"] == "text"
            and last.get("style") == element.get("style")
        ):
            last["text"] += element["text"]
        else:
            merged.append(element)
    return merged


def _section(lines: list[str]) -> Element:
    return {"type": "rich_text_section", "elements": parse_inline("\n".join(lines))}


def _flush_list(out: list[Element], items: list[tuple[str, int, str]]) -> None:
    # Consecutive items of one style and indent form one rich_text_list, as Slack's composer sends.
    current: Element | None = None
    for style, indent, body in items:
        if current is None or current["style"] != style or current["indent"] != indent:
            current = {"type": "rich_text_list", "style": style, "indent": indent, "elements": []}
            if style == "ordered":
                current["offset"] = 0
            current["border"] = 0
            out.append(current)
        current["elements"].append({"type": "rich_text_section", "elements": parse_inline(body)})


def rich_text_elements(text: str) -> list[Element]:
    out: list[Element] = []
    paragraph: list[str] = []
    quote: list[str] = []
    items: list[tuple[str, int, str]] = []
    lines = text.split("\n")
    index = 0

    def flush() -> None:
        if paragraph:
            out.append(_section(paragraph))
            paragraph.clear()
        if quote:
            out.append({"type": "rich_text_quote", "elements": parse_inline("\n".join(quote))})
            quote.clear()
        if items:
            _flush_list(out, items)
            items.clear()

    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            flush()
            body: list[str] = []
            rest = line[3:]
            if rest.endswith("```") and len(rest) >= 3:
                body.append(rest[:-3])
            else:
                if rest:
                    body.append(rest)
                index += 1
                while index < len(lines) and not lines[index].rstrip().endswith("```"):
                    body.append(lines[index])
                    index += 1
                if index < len(lines):
                    last = lines[index].rstrip()[:-3]
                    if last:
                        body.append(last)
            out.append(
                {"type": "rich_text_preformatted", "elements": [_text("\n".join(body), {})], "border": 0}
            )
        elif (m := _QUOTE.match(line)) is not None:
            if paragraph or items:
                flush()
            quote.append(m["body"])
        elif (m := _BULLET.match(line) or _ORDERED.match(line)) is not None:
            if paragraph or quote:
                flush()
            style = "bullet" if m.re is _BULLET else "ordered"
            items.append((style, len(m["indent"].expandtabs(4)) // 2, m["body"]))
        else:
            if quote or items:
                flush()
            paragraph.append(line)
        index += 1
    flush()
    return out


def block_id_for(text: str) -> str:
    # Slack's block ids are short random strings; a digest keeps the emulator deterministic.
    return hashlib.sha1(text.encode()).hexdigest()[:5]


def rich_text_block(text: str) -> Element:
    return {"type": "rich_text", "block_id": block_id_for(text), "elements": rich_text_elements(text)}
