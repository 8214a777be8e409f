"""Plain text as literal CommonMark: what `mail` (plain-text mail) and `bot` (Slack text) both
need, so that a person's `*`, `_` or leading `#`/`>`/`-` shows as typed rather than as formatting.

Escaping is kept minimal (``snake_case`` stays readable) because the stored Markdown is also read
as plain text.
"""

from __future__ import annotations

import re

# Always special inline: backslash, code, emphasis, strikethrough, link brackets, autolinks/HTML.
_INLINE_SPECIAL = re.compile(r"[\\`*~\[\]<]|_|&(?=#?[A-Za-z0-9]+;)")
_ORDERED_MARKER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_HEADING = re.compile(r"^#{1,6}(?=\s|$)")
_BULLET_MARKER = re.compile(r"^[-+](?=\s|$)")
_RULE_LINE = re.compile(r"^[-=_*+\s\\]+$")
# A table's delimiter row (`--|--`, `| :-- | --: |`): the pipes that would make the lines above a table.
_TABLE_DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?$")


def _escape_inline(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        char = match.group(0)
        if char == "_":
            start, end = match.start(), match.end()
            before = text[start - 1] if start > 0 else ""
            after = text[end] if end < len(text) else ""
            # An underscore between two letters or digits never delimits emphasis in CommonMark.
            if before.isalnum() and after.isalnum():
                return char
        return "\\" + char

    return _INLINE_SPECIAL.sub(replace, text)


def escape_markdown(text: str, *, line_start: bool = False) -> str:
    """``text`` as literal CommonMark inline content.

    With ``line_start`` the text begins a line, so block syntax (``# ``, ``> ``, ``- ``, ``1. ``,
    ``---``, ``===``, a table's ``--- | ---`` row) is neutralised as well.
    """
    escaped = _escape_inline(text)
    return escape_line_start(escaped) if line_start else escaped


def escape_line_start(escaped: str) -> str:
    """Text already escaped inline, beginning a line: its block syntax (``# ``, ``> ``, ``- ``,
    ``1. ``, ``1) ``, ``---``, ``===``, a table's ``--- | ---`` row) neutralised."""
    if not escaped:
        return escaped
    if _TABLE_DELIMITER.match(escaped):
        return escaped.replace("|", "\\|")
    if escaped[0] == ">" or _HEADING.match(escaped) or (escaped[0] in "-=+" and _RULE_LINE.match(escaped)):
        return "\\" + escaped
    if _BULLET_MARKER.match(escaped):
        return "\\" + escaped
    return _ORDERED_MARKER.sub(r"\1\\\2", escaped, count=1)


def link_destination(url: str) -> str:
    """``url`` as a link destination: angle brackets when it has spaces or parentheses."""
    if re.search(r"[\s()<>]", url):
        return "<" + url.replace("<", "%3C").replace(">", "%3E").replace("\n", "") + ">"
    return url


def plain_text_markdown(text: str) -> str:
    """Plain text (a plain-text mail) as Markdown that renders as that text, line for line.

    Every line is escaped as a line start, so a `>` quote answered in between stays as typed
    instead of swallowing the answers into the quote, and `---` under a line makes no heading. A
    block indented four columns after a blank line is Markdown's code block, where escapes would
    show: it is left verbatim (and shows as code, its spacing kept).
    """
    lines: list[str] = []
    in_code = False
    after_blank = True
    for line in text.split("\n"):
        if not line.strip():
            lines.append(line)
            after_blank = True
            continue
        rest = line.lstrip(" \t")
        indent = line[: len(line) - len(rest)]
        if len(indent.expandtabs(4)) >= 4 and (after_blank or in_code):
            lines.append(line)
            in_code = True
        else:
            lines.append(indent + escape_markdown(rest, line_start=True))
            in_code = False
        after_blank = False
    return "\n".join(lines)
