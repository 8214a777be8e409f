"""Styled inline runs to CommonMark, for Slack rich text.

Slack gives a line as a flat sequence of elements each carrying its own style flags; Markdown
needs properly nested delimiters. Styles are opened outer-to-inner (strike, bold, italic) and a
change closes only what must close, so ``bold``+``bold italic`` becomes ``**a*b***`` rather than
``**a*****b***``. Delimiters always hug non-space text: surrounding spaces go outside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.text.markdown import code_span, escape_markdown

STYLE_ORDER = ("strike", "bold", "italic")
_MARKERS = {"strike": "~~", "bold": "**"}
_SPACES = re.compile(r"^(\s*)(.*?)(\s*)$", re.S)


@dataclass(frozen=True)
class Run:
    """One piece of a line: literal ``text`` (escaped when rendered), or ready ``markdown``."""

    text: str
    styles: frozenset[str] = field(default_factory=frozenset)
    code: bool = False
    markdown: str | None = None


@dataclass
class _Token:
    kind: str  # "text" | "open" | "close"
    value: str  # the text, or the style name


def _merge_code(runs: list[Run]) -> list[Run]:
    """Adjacent code runs with the same styles become one span (two spans would fuse badly)."""
    merged: list[Run] = []
    for run in runs:
        previous = merged[-1] if merged else None
        if previous and previous.code and run.code and previous.styles == run.styles:
            merged[-1] = Run(previous.text + run.text, run.styles, code=True)
        else:
            merged.append(run)
    return merged


def _tokens(runs: list[Run]) -> list[_Token]:
    tokens: list[_Token] = []
    open_stack: list[str] = []
    pending_space = ""
    at_line_start = True
    for run in _merge_code(runs):
        if run.markdown is not None:
            lead, core, trail = "", run.markdown, ""
        elif run.code:
            lead, core, trail = "", code_span(run.text) if run.text else "", ""
        else:
            match = _SPACES.match(run.text)
            assert match is not None  # the pattern matches any string
            lead, core, trail = match.groups()
            core = escape_markdown(core, line_start=at_line_start) if core else ""
        if not core:
            pending_space += lead + trail if not at_line_start else ""
            continue
        pending_space += lead if not at_line_start else ""
        styles = run.styles.intersection(STYLE_ORDER)
        keep = 0
        while keep < len(open_stack) and open_stack[keep] in styles:
            keep += 1
        tokens.extend(_Token("close", style) for style in reversed(open_stack[keep:]))
        del open_stack[keep:]
        if pending_space:
            tokens.append(_Token("text", pending_space))
        for style in STYLE_ORDER:
            if style in styles and style not in open_stack:
                open_stack.append(style)
                tokens.append(_Token("open", style))
        tokens.append(_Token("text", core))
        pending_space = trail
        at_line_start = False
    tokens.extend(_Token("close", style) for style in reversed(open_stack))
    return tokens


def _neighbour_char(tokens: list[_Token], index: int, step: int) -> str:
    """The first character next to ``tokens[index]`` going ``step`` (-1 or 1); delimiters count
    as punctuation."""
    index += step
    while 0 <= index < len(tokens):
        token = tokens[index]
        if token.kind != "text":
            return "*"
        if token.value:
            return token.value[-1] if step < 0 else token.value[0]
        index += step
    return ""


def _italic_markers(tokens: list[_Token]) -> dict[int, str]:
    """``_`` for italics at word boundaries (never confused with ``**``); ``*`` inside a word,
    where ``_`` would not delimit emphasis at all."""
    chosen: dict[int, str] = {}
    open_index: int | None = None
    for index, token in enumerate(tokens):
        if token.value != "italic":
            continue
        if token.kind == "open":
            open_index = index
        elif token.kind == "close" and open_index is not None:
            inside_word = (
                _neighbour_char(tokens, open_index, -1).isalnum()
                or _neighbour_char(tokens, index, 1).isalnum()
            )
            chosen[open_index] = chosen[index] = "*" if inside_word else "_"
            open_index = None
    return chosen


def render_line(runs: list[Run]) -> str:
    """One line of styled runs as CommonMark inline text (no newline inside)."""
    tokens = _tokens(runs)
    italics = _italic_markers(tokens)
    parts = [
        token.value if token.kind == "text" else italics.get(index) or _MARKERS.get(token.value, "*")
        for index, token in enumerate(tokens)
    ]
    return "".join(parts)
