"""Cutting mrkdwn into section blocks and messages that Slack accepts.

Limits (Slack Block Kit reference): a section's text at most 3,000 characters, at most 50 blocks
in a message, a message's ``text`` at most 40,000 characters. Slack also rejects messages whose
blocks are long in total (``msg_blocks_too_long``) below any documented figure, so a message
carries at most ``MESSAGE_BUDGET`` characters of block text; more goes into the next message.
"""

from __future__ import annotations

import re

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
TEXT_LIMIT = 40000
MESSAGE_BUDGET = 12000
CONTINUED = " _(continued)_"  # after the header, on each later message of one long text

_FENCE = "```"
_LEADING_QUOTE = re.compile(r"^(?:> ?)+")
_TOKEN_OR_ENTITY = re.compile(r"<[^<>\n]*>|&(?:amp|lt|gt);")


def _safe_cut(line: str, limit: int) -> int:
    """Where to cut ``line`` at or before ``limit``: after a space if there is one, and never
    inside a ``<url|label>`` token or an entity."""
    cut = limit
    for match in _TOKEN_OR_ENTITY.finditer(line):
        if match.start() >= cut:
            break
        if cut < match.end():
            # A token longer than the whole limit has to be cut anyway.
            cut = match.start() or limit
            break
    space = line.rfind(" ", 0, cut)
    if space > cut // 2:
        cut = space + 1
    return max(cut, 1)


def _split_line(line: str, limit: int) -> list[str]:
    """A line longer than ``limit`` as several; a quote's continuation stays quoted."""
    quote = _LEADING_QUOTE.match(line)
    prefix = quote.group(0) if quote else ""
    parts: list[str] = []
    rest = line
    while len(rest) > limit:
        cut = _safe_cut(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = prefix + rest[cut:]
    parts.append(rest)
    return parts


def _fence_prefix(line: str) -> str | None:
    """The quote/indent prefix of a fence line (```` ``` ````), or None for any other line."""
    stripped = _LEADING_QUOTE.sub("", line).lstrip(" ")
    if not stripped.startswith(_FENCE):
        return None
    return line[: len(line) - len(stripped)]


def split_unit(text: str, *, is_code: bool = False, limit: int = SECTION_LIMIT) -> list[str]:
    """One block of mrkdwn (a paragraph, list, quote or code block) in pieces of at most
    ``limit`` characters, cut between lines where possible. A code block cut in two is closed
    at the end of one piece and reopened at the start of the next, so each piece renders alone.
    ``is_code`` is accepted for clarity; fences are recognised in any block (a list item or a
    quote may hold one)."""
    del is_code
    if len(text) <= limit:
        return [text]
    # Room for closing an open fence at the end of a piece and reopening it in the next.
    margin = 16
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    fence: str | None = None  # prefix of the open fence, if inside one
    for line in text.split("\n"):
        for part in _split_line(line, limit - 2 * margin):
            if current and size + 1 + len(part) > limit - margin:
                if fence is not None:
                    current.append(fence + _FENCE)
                pieces.append("\n".join(current))
                current = [fence + _FENCE] if fence is not None else []
                size = len(current[0]) if current else 0
            size += len(part) + (1 if current else 0)
            current.append(part)
        prefix = _fence_prefix(line)
        if prefix is not None:
            fence = prefix if fence is None else None
    if current:
        pieces.append("\n".join(current))
    return pieces


_LINK = re.compile(r"<([^<>|\n]+)\|([^<>\n]+)>|<([^<>|\n]+)>")
_EMPHASIS = re.compile(r"(?<![\w*_~])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~])")


def mrkdwn_to_plain(mrkdwn: str) -> str:
    """A notification fallback: link labels, no emphasis markers or fences (entities stay, as
    Slack expects in ``text``)."""
    text = "\n".join(line for line in mrkdwn.split("\n") if line.strip() != _FENCE)
    text = text.replace(_FENCE, "")
    text = _LINK.sub(lambda match: match.group(2) or match.group(3), text)
    for _ in range(3):  # nested emphasis, e.g. *_both_*
        text = _EMPHASIS.sub(r"\2", text)
    return text


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sections(pieces: list[str]) -> list[str]:
    """Pieces joined into as few sections as fit, a blank line between them."""
    sections: list[str] = []
    for piece in pieces:
        if sections and len(sections[-1]) + 2 + len(piece) <= SECTION_LIMIT:
            sections[-1] += "\n\n" + piece
        else:
            sections.append(piece)
    return sections


def pack_messages(pieces: list[str], header: str | None) -> list[tuple[str, list[dict[str, object]]]]:
    """Pieces (each at most a section long) as messages: (fallback text, blocks).

    A header (who wrote it) opens the first message, and every later one says it continues it: a
    part without one would read as the desk's own words, and its text could start with a line
    that looks like a status change or a note."""
    messages: list[tuple[list[str], list[dict[str, object]]]] = []
    if header:
        header = header[: SECTION_LIMIT - len(CONTINUED)]

    def opening(first: bool) -> tuple[list[str], list[dict[str, object]], int]:
        if not header:
            return [], [], 0
        text = header if first else header + CONTINUED
        return [text], [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}], len(text)

    fallback, blocks, used = opening(first=True)
    for section in _sections(pieces):
        if blocks and (len(blocks) >= MAX_BLOCKS or used + len(section) > MESSAGE_BUDGET):
            messages.append((fallback, blocks))
            fallback, blocks, used = opening(first=False)
        blocks.append(_section(section))
        fallback.append(section)
        used += len(section)
    if blocks:
        messages.append((fallback, blocks))
    return [(_fallback_text(parts), message_blocks) for parts, message_blocks in messages]


def _fallback_text(parts: list[str]) -> str:
    text = mrkdwn_to_plain("\n\n".join(parts))
    if len(text) <= TEXT_LIMIT:
        return text
    return text[: _safe_cut(text, TEXT_LIMIT - 1)].rstrip() + "…"
