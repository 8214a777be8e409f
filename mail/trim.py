"""Reply trimming: the customer's new words, without quoted history and signatures.

The text is classified line by line (`mail/inbound_trim_lines.py`), then read as a sequence:

1. Leading history is dropped when the reply comes below it (bottom-posting): an attribution
   and the quote right after it, a forwarded-message marker and its pasted header block.
   A leading quote *without* an attribution is kept: it is what the reply below answers.
2. The reply ends at the first cut: a signature delimiter ("-- "), "-----Original Message-----",
   a pasted header block ("From: … Sent: …"), an attribution followed by history, or a quote
   block that nothing but signatures follows. A "Forwarded message" below the customer's words is
   no cut: what they forward is what they pass on; only its marker goes.
3. An attribution followed by a quote *and then more of the customer's text* is an interleaved
   reply: only the attribution line goes, the quotes stay so the answers keep their questions
   (the first one too, even at the top).
4. Trailing mobile signatures ("Sent from my iPhone") go.

The rule above all: never lose the customer's words. When unsure, text stays; when trimming
would leave nothing, the whole body is returned.
"""

from __future__ import annotations

import re

from mail.inbound_trim_lines import (
    classify_lines,
    header_field,
    is_forward_marker,
    is_forwarded_message,
)

_WORD = re.compile(r"[^\W_]")
_SEPARATOR_LINE = re.compile(r"^\s*([-_=*#+]\s*){3,}$")
_MAX_SIGNATURE_NAME_LINES = 3
_MAX_SIGNATURE_NAME_WORDS = 6


def _normalize(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _strip_edges(lines, separators=False)


def _strip_edges(lines: list[str], *, separators: bool) -> list[str]:
    """Without blank lines (and, with `separators`, rules like "-----") at either end."""

    def removable(line: str) -> bool:
        return not line.strip() or (separators and _SEPARATOR_LINE.match(line) is not None)

    start, end = 0, len(lines)
    while start < end and removable(lines[start]):
        start += 1
    while end > start and removable(lines[end - 1]):
        end -= 1
    return lines[start:end]


class _Reading:
    """One body, classified, with the look-ups the reading needs precomputed (linear time)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.kinds = classify_lines(lines)
        self._block_ends: dict[int, int | None] = {}
        size = len(lines)
        # follows[i]: does the customer write more from line i on, before further history?
        self.follows = [False] * (size + 1)
        # text_after[i]: how many text lines there are from line i to the end.
        self.text_after = [0] * (size + 1)
        for position in range(size - 1, -1, -1):
            kind = self.kinds[position]
            self.text_after[position] = self.text_after[position + 1] + (kind == "T")
            if kind == "T":
                self.follows[position] = True
            elif kind in {"B", "D", "U"}:
                self.follows[position] = False
            elif kind == "H":
                self.follows[position] = not self.pasted_history(position)
            else:
                self.follows[position] = self.follows[position + 1]

    def skip(self, position: int, skippable: str) -> int:
        while position < len(self.kinds) and self.kinds[position] in skippable:
            position += 1
        return position

    def header_block_end(self, start: int) -> int | None:
        """End (exclusive) of a pasted header block starting at `start`, or None.

        A block has at least two fields, one of them the sender ("From:", "Von:", "De:"); a
        field may wrap onto a continuation line or two (long To: lists, long subjects).
        """
        if start not in self._block_ends:
            self._block_ends[start] = self._find_header_block_end(start)
        return self._block_ends[start]

    def _find_header_block_end(self, start: int) -> int | None:
        fields = continuation = 0
        has_from = False
        position = start
        while position < len(self.lines) and position - start < 16:
            line = self.lines[position]
            field = header_field(line) if self.kinds[position] in {"H", "S"} else None
            if field is not None:
                fields += 1
                has_from = has_from or field.is_from
                continuation = 0
            elif not line.strip():
                break
            else:
                continuation += 1
                if continuation > 2:
                    break
            position += 1
        return position - continuation if fields >= 2 and has_from else None

    def quote_block_end(self, start: int) -> int:
        """End (exclusive) of the quote block at `start`: quoted lines and blanks between them."""
        position = end = start
        while position < len(self.kinds) and self.kinds[position] in {"Q", "E"}:
            if self.kinds[position] == "Q":
                end = position + 1
            position += 1
        return end

    def leading_history(self, dropped: set[int]) -> int:
        """Drop history above a bottom-posted reply; return where the reply starts."""
        kinds = self.kinds
        position = self.skip(0, "E")
        while position < len(kinds):
            kind = kinds[position]
            if kind == "B":
                after = self.skip(position, "B")
                dropped.update(range(position, after))
                following = self.skip(after, "E")
                if following < len(kinds) and kinds[following] == "Q":
                    quote_end = self.quote_block_end(following)
                    answer = self.skip(quote_end, "E")
                    # Bottom-posted below the history: the quote goes. Interleaved (more quotes,
                    # each answered, follow): it stays, so the first answer keeps its question too.
                    if self.follows[quote_end] and not self.answers_again(answer):
                        dropped.update(range(following, quote_end))
                        following = answer
                position = following
            elif kind == "D" and is_forward_marker(self.lines[position]):
                dropped.add(position)
                position = self.skip(position + 1, "E")
            elif kind in {"H", "U"}:
                block_start = self.skip(position, "U")
                block_end = self.header_block_end(block_start) if block_start < len(kinds) else None
                if block_end is None:
                    break
                dropped.update(range(position, block_end))
                position = self.skip(block_end, "E")
            else:
                break
        return position

    def pasted_history(self, start: int) -> bool:
        """Is the header block at `start` the head of pasted history, where the reply ends?

        A mail client's block has three or more fields (From, Sent/Date, To, Subject), or ends
        where the old message starts: a blank line, a quote, the end. Two header-like lines run on
        by the customer's sentence ("From: billing@vendor.test / To: me / and it asked ...") are
        the customer's own words, and stay."""
        end = self.header_block_end(start)
        if end is None:
            return False
        fields = sum(1 for line in self.lines[start:end] if header_field(line) is not None)
        return fields >= 3 or end >= len(self.lines) or self.kinds[end] != "T"

    def answers_again(self, start: int) -> bool:
        """From `start` (the customer's text after a quote), does another quote come that more of
        the customer's text answers, before any cut? Then the reply is interleaved."""
        kinds = self.kinds
        for position in range(start, len(kinds)):
            kind = kinds[position]
            if kind in {"D", "B", "U"} or (kind == "H" and self.pasted_history(position)):
                return False
            if kind == "Q":
                return self.follows[self.quote_block_end(position)]
        return False

    def cut_position(self, start: int, dropped: set[int]) -> int:
        """Where the reply ends; attribution lines of interleaved quotes and the markers of mails
        forwarded below the customer's note go to `dropped`."""
        kinds = self.kinds
        position = start
        while position < len(kinds):
            kind = kinds[position]
            if kind == "D" and position > start and is_forwarded_message(self.lines[position]):
                # A mail forwarded below the customer's note is what they pass on, not history:
                # the marker goes; who wrote it, when, about what, and its text stay.
                dropped.add(position)
                position = self.skip(position + 1, "E")
                block_end = self.header_block_end(position) if position < len(kinds) else None
                if block_end is not None:
                    position = block_end
                continue
            if kind == "D":
                return position
            if kind == "U":
                following = self.skip(position + 1, "E")
                if following >= len(kinds) or self.header_block_end(following) is not None:
                    return position
                if self.text_after[following] <= _MAX_SIGNATURE_NAME_LINES:
                    return position  # a short tail under a rule of underscores is a signature
            elif kind == "H" and self.pasted_history(position):
                return position
            elif kind == "B":
                after = self.skip(position, "B")
                following = self.skip(after, "E")
                if following < len(kinds) and kinds[following] == "Q":
                    quote_end = self.quote_block_end(following)
                    if self.follows[quote_end]:
                        dropped.update(range(position, after))  # interleaved: keep the quotes
                        position = quote_end
                        continue
                return position
            elif kind == "Q":
                quote_end = self.quote_block_end(position)
                if not self.follows[quote_end]:
                    return position
                position = quote_end
                continue
            position += 1
        return len(kinds)


def _without_trailing_signature(lines: list[str], kinds: list[str]) -> list[str]:
    """Cut at the first mobile signature that only short name-like lines follow."""
    cut = len(lines)
    text_lines = 0
    for index in range(len(lines) - 1, -1, -1):
        if kinds[index] == "S":
            cut = index
        elif kinds[index] == "T":
            text_lines += 1
            too_long = len(lines[index].split()) > _MAX_SIGNATURE_NAME_WORDS
            if too_long or text_lines > _MAX_SIGNATURE_NAME_LINES:
                break
    return lines[:cut]


def trim_reply(text: str) -> str:
    """The reply part of a plain-text or Markdown body (see the module docstring)."""
    lines = _normalize(text)
    whole = "\n".join(lines)
    if not lines:
        return whole
    reading = _Reading(lines)
    dropped: set[int] = set()
    start = reading.leading_history(dropped)
    cut = reading.cut_position(start, dropped)
    kept = [index for index in range(start, cut) if index not in dropped]
    reply = _without_trailing_signature([lines[i] for i in kept], [reading.kinds[i] for i in kept])
    reply = _strip_edges(reply, separators=True)
    if not any(_WORD.search(line) for line in reply):
        return whole  # trimming found nothing of the customer's own: show everything
    return "\n".join(reply)
