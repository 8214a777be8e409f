"""Styled inline runs to CommonMark, for Slack rich text.

Slack gives a line as a flat sequence of elements each carrying its own style flags; Markdown
needs properly nested delimiters. Styles are opened outer-to-inner (strike, bold, italic) and a
change closes only what must close, so ``bold``+``bold italic`` becomes ``**a*b***`` rather than
``**a*****b***``. Delimiters always hug non-space text: surrounding spaces go outside them, and
punctuation too where a delimiter would not parse otherwise (checked with the parser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

from bot.text.markdown import code_span, escape_markdown

STYLE_ORDER = ("strike", "bold", "italic")
_MARKERS = {"strike": "~~", "bold": "**"}
_SPACES = re.compile(r"^(\s*)(.*?)(\s*)$", re.S)
# The email side's parser family and features, to check that a line's delimiters parse.
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough"])


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
    plain: bool = False  # escaped literal text (not a link, code span or mention's Markdown)


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
        tokens.append(_Token("text", core, plain=run.markdown is None and not run.code))
        pending_space = trail
        at_line_start = False
    tokens.extend(_Token("close", style) for style in reversed(open_stack))
    return tokens


def _punctuation_run(text: str, *, trailing: bool) -> str:
    """The ASCII punctuation at the end (or start) of ``text``; escapes (``\\*``) come whole."""
    match = re.search(r"[!-/:-@\[-`{-~]+$" if trailing else r"^[!-/:-@\[-`{-~]+", text)
    return match.group(0) if match else ""


def _hug_words(tokens: list[_Token]) -> list[_Token]:
    """Delimiters moved inside punctuation that stands between them and a word.

    CommonMark closes ``**`` after punctuation only before a space or more punctuation, and opens
    it before punctuation only after one: bold ``Note:`` typed against ``text`` would show as
    ``**Note:**text``. The punctuation goes outside the style instead (``**Note**:text``).
    """
    out = list(tokens)
    index = 0
    while index < len(out):
        group_end = index
        while group_end < len(out) and out[group_end].kind == out[index].kind != "text":
            group_end += 1
        if group_end == index:
            index += 1
            continue
        if out[index].kind == "close" and index > 0 and out[index - 1].plain:
            before = out[index - 1]
            run = _punctuation_run(before.value, trailing=True)
            if run and run != before.value and _neighbour_char(out, group_end - 1, 1).isalnum():
                out[index - 1] = _Token("text", before.value[: -len(run)], plain=True)
                out.insert(group_end, _Token("text", run, plain=True))
        elif out[index].kind == "open" and group_end < len(out) and out[group_end].plain:
            after = out[group_end]
            run = _punctuation_run(after.value, trailing=False)
            if run and run != after.value and _neighbour_char(out, index, -1).isalnum():
                out[group_end] = _Token("text", after.value[len(run) :], plain=True)
                out.insert(index, _Token("text", run, plain=True))
                group_end += 1
        index = group_end
    return out


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


def _joined(tokens: list[_Token]) -> str:
    italics = _italic_markers(tokens)
    parts = [
        token.value if token.kind == "text" else italics.get(index) or _MARKERS.get(token.value, "*")
        for index, token in enumerate(tokens)
    ]
    return "".join(parts)


def _words(markdown: str) -> str:
    """What a reader sees of an inline Markdown line, delimiters included if they did not parse."""
    shown = []
    for token in _PARSER.parseInline(markdown)[0].children or []:
        if token.type in ("text", "code_inline"):
            shown.append(token.content)
    return "".join(shown).replace(" ", "")


def render_line(runs: list[Run]) -> str:
    """One line of styled runs as CommonMark inline text (no newline inside)."""
    tokens = _tokens(runs)
    line = _joined(tokens)
    if not any(token.kind != "text" for token in tokens):
        return line
    unstyled = _words(_joined([token for token in tokens if token.kind == "text"]))
    if _words(line) == unstyled:
        return line
    # Some delimiter did not parse and would show as an asterisk: try it with punctuation moved
    # outside the styles, and keep that if it reads as the words alone.
    hugged = _joined(_hug_words(tokens))
    return hugged if _words(hugged) == unstyled else line
