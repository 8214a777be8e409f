"""Slack mrkdwn (the ``text`` of bot messages and old clients) to canonical Markdown.

mrkdwn emphasis needs word boundaries (``*bold*``, ``_italic_``, ``~strike~``), ``&``, ``<`` and
``>`` arrive as entities, and everything Slack-specific is an angle-bracket token: ``<@U…>``,
``<#C…|name>``, ``<!subteam^S…|@handle>``, ``<!here>``, ``<!date^…|fallback>``, ``<url|label>``.
"""

from __future__ import annotations

import re

from bot.text.dates import format_slack_date
from bot.text.emoji import emoji_character
from bot.text.markdown import code_fence, code_span, escape_markdown, markdown_link
from bot.text.resolver import MentionResolver

HARD_BREAK = "  \n"

_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_CODE_BLOCK = re.compile(r"```(.*?)```", re.S)
_INLINE = re.compile(
    r"""
    (?P<code>`[^`\n]+`)
    |(?P<angle><[^<>\n]+>)
    |(?<![\w*])\*(?P<bold>(?=\S)[^*\n]+?(?<=\S))\*(?![\w*])
    |(?<![\w_])_(?P<italic>(?=\S)[^_\n]+?(?<=\S))_(?![\w_])
    |(?<![\w~])~(?P<strike>(?=\S)[^~\n]+?(?<=\S))~(?![\w~])
    |(?<!\w):(?P<emoji>[a-z0-9_+'-]+(?:::skin-tone-[1-6])?):
    """,
    re.X,
)
_QUOTE = re.compile(r"^(?:>|&gt;)(?!(?:>|&gt;){2}) ?")
_BLOCK_QUOTE = re.compile(r"^(?:>>>|&gt;&gt;&gt;) ?")
_BULLET = re.compile(r"^(\s*)[•◦▪‣*-]\s+")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})[.)]\s+")


def unescape(text: str) -> str:
    """Slack's three entities back to characters (only these three are ever encoded)."""
    return _ENTITY.sub(lambda match: _ENTITIES[match.group(1)], text)


def _angle_words(inner: str, resolver: MentionResolver) -> tuple[str, str | None]:
    """The words a ``<…>`` token shows, and its URL when it is a link."""
    target, _, label = inner.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        return "@" + (label.lstrip("@") or resolver.user_name(target[1:])), None
    if target.startswith("#"):
        return "#" + (label.lstrip("#") or resolver.channel_name(target[1:]).lstrip("#")), None
    if target.startswith("!subteam^"):
        group_id = target.removeprefix("!subteam^")
        return "@" + (label.lstrip("@") or resolver.usergroup_handle(group_id).lstrip("@")), None
    if target.startswith("!date^"):
        if label:
            return label, None
        parts = target.split("^")
        return format_slack_date(parts[1], parts[2] if len(parts) > 2 else "{date_num}"), None
    if target.startswith("!"):
        # <!here>, <!channel>, <!everyone>, and any newer special command: its label or its name.
        return label or "@" + target[1:].split("^")[0], None
    url = unescape(target)
    return label or url, url


def _plain(text: str, resolver: MentionResolver) -> str:
    """mrkdwn as plain words, for code blocks: tokens resolved, entities decoded, no formatting."""
    parts = re.split(r"(<[^<>\n]+>)", text)
    return "".join(
        _angle_words(part[1:-1], resolver)[0] if index % 2 else unescape(part)
        for index, part in enumerate(parts)
    )


def _inline(text: str, resolver: MentionResolver, *, line_start: bool = True) -> str:
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        literal = unescape(text[position : match.start()])
        out.append(escape_markdown(literal, line_start=line_start and not "".join(out)))
        position = match.end()
        if match.group("code"):
            out.append(code_span(unescape(match.group("code")[1:-1])))
        elif match.group("angle"):
            words, url = _angle_words(match.group("angle")[1:-1], resolver)
            at_start = line_start and not "".join(out)
            out.append(
                markdown_link(escape_markdown(words), url)
                if url
                else escape_markdown(words, line_start=at_start)
            )
        elif match.group("bold"):
            out.append(f"**{_inline(match.group('bold'), resolver, line_start=False)}**")
        elif match.group("italic"):
            out.append(f"_{_inline(match.group('italic'), resolver, line_start=False)}_")
        elif match.group("strike"):
            out.append(f"~~{_inline(match.group('strike'), resolver, line_start=False)}~~")
        else:
            name = match.group("emoji")
            out.append(emoji_character(name) or escape_markdown(f":{name}:"))
    out.append(escape_markdown(unescape(text[position:]), line_start=line_start and not "".join(out)))
    return "".join(out)


def _text_lines(segment: str, resolver: MentionResolver) -> list[tuple[str, bool, str]]:
    """Each line as (kind, quoted, markdown); kind is "text", "blank" or "item"."""
    lines: list[tuple[str, bool, str]] = []
    quote_rest = False
    for raw_line in segment.split("\n"):
        line = raw_line
        quoted = quote_rest
        if not quoted and (match := _BLOCK_QUOTE.match(line)):
            quote_rest = quoted = True
            line = line[match.end() :]
        elif not quoted and (match := _QUOTE.match(line)):
            quoted = True
            line = line[match.end() :]
        if not line.strip():
            lines.append(("blank", quoted, ""))
        elif match := _BULLET.match(line):
            depth = len(match.group(1).replace("\t", "    ")) // 2
            content = _inline(line[match.end() :], resolver)
            lines.append(("item", quoted, "  " * depth + "- " + content))
        elif match := _ORDERED.match(line):
            content = _inline(line[match.end() :], resolver)
            lines.append(("item", quoted, f"{match.group(2)}. {content}"))
        else:
            lines.append(("text", quoted, _inline(line.strip(), resolver)))
    return lines


def _assemble(lines: list[tuple[str, bool, str]]) -> str:
    """Lines to Markdown: newlines inside a paragraph stay line breaks; a list, a quote and a
    paragraph are kept apart by a blank line so that none swallows the next."""
    out: list[str] = []
    previous: tuple[str, bool] | None = None
    blank_between: bool | None = None  # None: no blank line since the previous line; else quoted?
    for kind, quoted, markdown in lines:
        if kind == "blank":
            if previous is not None and blank_between is None:
                blank_between = quoted
            continue
        if previous is not None:
            same_quote = previous[1] and quoted and blank_between is not False
            if blank_between is not None or previous != (kind, quoted):
                out.append(">" if same_quote else "")
            elif kind == "text":
                out[-1] += "  "
        out.append(("> " if quoted else "") + markdown)
        previous, blank_between = (kind, quoted), None
    return "\n".join(out)


def mrkdwn_to_markdown(text: str, resolver: MentionResolver) -> str:
    """Slack mrkdwn ``text`` as canonical Markdown (CommonMark + ``~~strike~~``)."""
    parts: list[str] = []
    position = 0
    for match in _CODE_BLOCK.finditer(text):
        parts.append(_assemble(_text_lines(text[position : match.start()], resolver)))
        code = match.group(1).removeprefix("\n")
        parts.append(code_fence(_plain(code, resolver)))
        position = match.end()
    parts.append(_assemble(_text_lines(text[position:], resolver)))
    return "\n\n".join(part for part in parts if part.strip())
