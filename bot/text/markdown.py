"""Writing CommonMark safely: escaping a customer's text and building code spans, fences, links.

The canonical body is rendered to HTML for email, so text typed in Slack must not turn into
formatting there: a customer's ``*`` or ``_`` is escaped, and so is anything that would start a
heading, list, quote or fence at the beginning of a line. Escaping is kept minimal (``snake_case``
stays readable) because the stored Markdown is also read as plain text.
"""

from __future__ import annotations

import re

from mail.markdown_escape import escape_markdown, link_destination

__all__ = ["code_fence", "code_span", "escape_markdown", "link_destination", "markdown_link"]


def code_span(text: str) -> str:
    """An inline code span holding ``text`` verbatim, whatever backticks it contains."""
    text = text.replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each side when both are present, and a span may not
    # start or end with a backtick next to the fence: pad in those cases.
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def code_fence(text: str, language: str = "") -> str:
    """A fenced code block holding ``text`` verbatim."""
    longest = max((len(run) for run in re.findall(r"^ {0,3}`{3,}", text, flags=re.M)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text[:-1] if text.endswith("\n") else text
    info = re.sub(r"[`\s]", "", language)
    return f"{fence}{info}\n{body}\n{fence}"


_AUTOLINK_OK = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*$")


def markdown_link(label_markdown: str, url: str) -> str:
    """A link; an autolink ``<url>`` when the label is the URL itself."""
    if not label_markdown or label_markdown == escape_markdown(url):
        if _AUTOLINK_OK.match(url):
            return f"<{url}>"
        label_markdown = escape_markdown(url)
    return f"[{label_markdown}]({link_destination(url)})"
