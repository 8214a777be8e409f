"""Bound hostile HTML before any real parser sees it: size, nesting depth, attribute count.

html5ever (inside nh3) slows down quadratically on very deep nesting (100,000 nested <div>s
take about 20 s), and BeautifulSoup and markdownify recurse per level. This single linear pass
keeps at most `max_depth` levels of elements (deeper tags are dropped, their text kept), at most
a few short attributes per tag, and no comments, scripts or styles, so everything after it
works on bounded input. It is not a sanitiser: nh3 runs right after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HTML_CHARS = 500_000  # about 1 s to convert; real mail bodies are far smaller
MAX_HTML_DEPTH = 100
_MAX_TAG_CHARS = 2_000
_MAX_ATTRIBUTES = 8

_TAG = re.compile(r"(/?)([A-Za-z][A-Za-z0-9:-]{0,40})")
_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]{1,40})(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
# Only attributes something downstream reads: links, images, quote markers, table spans.
_KEPT_ATTRIBUTES = {
    "href",
    "src",
    "alt",
    "title",
    "class",
    "id",
    "type",
    "width",
    "height",
    "style",
    "colspan",
    "rowspan",
    "start",
}
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}
# Elements whose content is never text to show (nh3 drops them too; removing them here keeps
# "<" inside scripts from being read as tags).
_RAW_CONTENT = {"script", "style", "title", "textarea", "xmp", "noscript", "template", "iframe", "object"}
# Elements an open one of the same kind implicitly closes (HTML's optional end tags).
_SELF_CLOSING_SIBLINGS = {"p", "li", "dt", "dd", "tr", "td", "th", "option"}


@dataclass(frozen=True)
class LimitedHtml:
    html: str
    truncated: bool  # something was cut: size, depth or attributes


def _rebuild_tag(name: str, closing: bool, body: str) -> str:
    if closing:
        return f"</{name}>"
    kept: list[str] = []
    for attr_name, value in _ATTRIBUTE.findall(body[:_MAX_TAG_CHARS]):
        if attr_name.lower() in _KEPT_ATTRIBUTES and len(kept) < _MAX_ATTRIBUTES:
            kept.append(f"{attr_name.lower()}={value}" if value else attr_name.lower())
    return f"<{name}{' ' if kept else ''}{' '.join(kept)}>"


def limit_html(html: str, *, max_chars: int = MAX_HTML_CHARS, max_depth: int = MAX_HTML_DEPTH) -> LimitedHtml:
    truncated = len(html) > max_chars
    html = html[:max_chars]
    out: list[str] = []
    stack: list[str] = []
    dropped: dict[str, int] = {}
    position = 0
    while position < len(html):
        start = html.find("<", position)
        if start < 0:
            out.append(html[position:])
            break
        out.append(html[position:start])
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            position = len(html) if end < 0 else end + 3
            continue
        end = html.find(">", start + 1)
        if end < 0:  # no tag can close any more: the rest is text
            out.append(html[start:].replace("<", "&lt;"))
            break
        if html.startswith(("<!", "<?"), start):  # doctype, CDATA, conditional marker, XML PI
            position = end + 1
            continue
        match = _TAG.match(html, start + 1)
        if match is None:
            out.append("&lt;")  # a stray "<" is text
            position = start + 1
            continue
        closing, name = match.group(1) == "/", match.group(2).lower()
        body = html[match.end() : end]
        position = end + 1
        if name in _RAW_CONTENT:
            if not closing:
                close = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(html, position)
                position = len(html) if close is None else close.end()
            continue
        if closing:
            if dropped.get(name):
                dropped[name] -= 1
            elif name in stack:
                while stack:
                    out.append(f"</{stack[-1]}>")
                    if stack.pop() == name:
                        break
            continue
        if name in _SELF_CLOSING_SIBLINGS and stack and stack[-1] == name:
            out.append(f"</{stack.pop()}>")
        if name in _VOID or body.rstrip().endswith("/"):
            out.append(_rebuild_tag(name, False, body))
            continue
        if len(stack) >= max_depth:
            dropped[name] = dropped.get(name, 0) + 1
            truncated = True
            continue
        stack.append(name)
        out.append(_rebuild_tag(name, False, body))
    out.extend(f"</{name}>" for name in reversed(stack))
    return LimitedHtml("".join(out), truncated)
