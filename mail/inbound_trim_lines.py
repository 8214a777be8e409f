"""Line patterns for reply trimming: what a line of a reply *is*.

Each line of a plain-text (or Markdown) reply gets one kind (the idea comes from Discourse's
email_reply_trimmer, which classifies lines and then reasons about the sequence):

    E  empty or punctuation only        Q  quoted ("> ", or Supercite "Name> ")
    B  attribution ("On … wrote:"),     H  a field of a pasted header block ("From: …")
       possibly wrapped over lines      S  a mobile/app signature ("Sent from my iPhone")
    D  a delimiter (signature "-- ", "-----Original Message-----", forwarded-message markers)
    T  anything else: the customer's text

Attribution lines come from our own patterns plus mail-parser-reply's per-language
"wrote" headers (Czech, Danish, Dutch, Japanese, Korean, Swedish, Chinese, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailparser_reply.constants import MAIL_LANGUAGES

# Lines longer than this are prose, never an attribution, header or signature; skipping them
# also keeps every regex below on short input (no quadratic backtracking on hostile text).
MAX_MARKER_LINE = 400
_MAX_WINDOW_LINES = 6

QUOTE = re.compile(r"^[ \t]*(>|[^\W\d_]{1,15}>(?=\s|$))")
_PUNCTUATION_ONLY = re.compile(r"^[\W_]*$")

# "-- " is the RFC 3676 section 4.3 signature separator; "--" is how clients that strip
# trailing spaces send it. "ᐧ" (U+1427) alone on a line is the mark Gmail tracking extensions
# (Streak, Mailtrack) put before their signature.
_SIGNATURE_DELIMITER = re.compile(r"^[ \t]*(--[ \t]*|ᐧ[ \t]*)$")
_ORIGINAL_MESSAGE = re.compile(
    r"^[ \t]*[*_]*[ \t]*-{2,}[ \t]*(original message|forwarded message|message d'origine|message transféré"
    r"|ursprüngliche nachricht|weitergeleitete nachricht|mensaje original|mensaje reenviado"
    r"|messaggio originale|messaggio inoltrato|oorspronkelijk bericht|doorgestuurd bericht"
    r"|originalmeddelande|vidarebefordrat meddelande|opprinnelig melding|videresendt melding"
    r"|oprindelig meddelelse|videresendt meddelelse|wiadomość oryginalna|przekazana wiadomość"
    r"|исходное сообщение|пересылаемое сообщение|mensagem original|mensagem encaminhada"
    r"|původní zpráva|přeposlaná zpráva|alkuperäinen viesti|eredeti üzenet|orijinal mesaj"
    r"|原始邮件|原始郵件|転送メッセージ|元のメッセージ)[ \t]*-{2,}[ \t]*[*_]*[ \t]*$",
    re.IGNORECASE,
)
# The words of `_ORIGINAL_MESSAGE` that name a forward, language by language.
_FORWARDED_WORDS = re.compile(
    r"^(forwarded message|message transféré|weitergeleitete nachricht|mensaje reenviado"
    r"|messaggio inoltrato|doorgestuurd bericht|vidarebefordrat meddelande|videresendt melding"
    r"|videresendt meddelelse|przekazana wiadomość|пересылаемое сообщение|mensagem encaminhada"
    r"|přeposlaná zpráva|転送メッセージ)$",
    re.IGNORECASE,
)
_FORWARD_INTRO = re.compile(
    r"^[ \t]*(begin forwarded message|début du message réexpédié|anfang der weitergeleiteten nachricht"
    r"|inicio del mensaje reenviado|inizio messaggio inoltrato|begin doorgestuurd bericht)[ \t]*:[ \t]*$",
    re.IGNORECASE,
)
# Outlook's reply separator: a row of underscores (a cut only when a header block or a short
# tail follows; see trim.py).
UNDERSCORES = re.compile(r"^[ \t]*_{5,}[ \t]*$")

_HEADER_NAMES_FROM = (
    "from|de|von|da|van|från|fra|od|от|expéditeur|remetente|mittente|feladó|lähettäjä|kimden"
    "|发件人|發件人|寄件者|差出人"
)
_HEADER_NAMES_OTHER = (
    "sent|date|to|cc|bcc|subject|reply-to|envoyé|à|a|objet|sujet|répondre à|gesendet|an|betreff|datum"
    "|kopie|antwort an|enviado|para|asunto|assunto|fecha|data|inviato|oggetto|risposta|rispondi a"
    "|verzonden|aan|onderwerp|skickat|till|ämne|kopia|svara till|sendt|til|emne|dato|wysłano|do"
    "|temat|dw|odpowiedź do|отправлено|кому|тема|дата|копия|elküldve|címzett|tárgy|dátum"
    "|lähetetty|vastaanottaja|aihe|päivämäärä|gönderildi|kime|konu|tarih"
    "|发送时间|收件人|主题|日期|抄送|傳送時間|收件者|主旨|副本|送信日時|宛先|件名|日付"
)
_HEADER_LINE = re.compile(
    rf"^[ \t]*\*{{0,2}}[ \t]*(?P<name>{_HEADER_NAMES_FROM}|{_HEADER_NAMES_OTHER})[ \t]*\*{{0,2}}[ \t]*[:：]",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(rf"^(?:{_HEADER_NAMES_FROM})$", re.IGNORECASE)

# Mobile and app signatures. Only ever short lines (see is_signature_line).
_SENT_FROM = re.compile(
    r"^[ \t]*[<(\[]*[ \t]*("
    r"sent (from|with|via|by|using) |from my |get (\[)?outlook for|envoyé (depuis|de) mon|envoyé depuis"
    r"|von meinem .*gesendet|gesendet von|diese nachricht wurde von meinem|enviado (desde|de|do) m"
    r"|inviato da|verzonden (met|vanaf|van)|skickat från|sendt fra|hent outlook|wysłano z|odesláno z"
    r"|отправлено с|lähetetty |.{0,40} from (my )?(mobile|phone|iphone|ipad|android)\b"
    r"|從我的|从我的|我的 ?iphone|iphoneから送信|内 .*에서 보냄|내 .*에서 보냄)",
    re.IGNORECASE,
)

# An attribution ends with the verb and a colon in one of many languages, or with "<address>:"
# (Gmail's "2016-10-24 15:36 GMT+02:00 Name <addr>:"), or Zoho's "wrote ----".
_ATTRIBUTION_END = re.compile(
    r"(\bwrote|\ba\s+écrit|\bschrieb\b.{0,120}|\bescribió|\bescreveu|\bnapisał(\(a\))?|\bnadesłał"
    r"|\bnapsal(\(a\))?|\bskrev\b.{0,160}|\bschreef\b.{0,160}|\bha\s+scritto|\bнаписал(\(а\)|а)?"
    r"|\bпише|\bkirjoitti|\bírta\b.{0,80}|\byazdı|\bέγραψε|\bescrigué|\bva\s+escriure|写道|寫道"
    r"|님이\s*작성(하였습니다)?"
    r"|[^\s<>]+@[^\s<>]+>?\s*>?)\s*[:：]\s*$"
    r"|\bwrote\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Words that open a wrapped attribution; a window may reach back over lines to one of them.
_ATTRIBUTION_START = re.compile(
    r"^[ \t]*(-{2,}[ \t]*)?((on|le|am|el|em|il|op|den|dne|dnia|w dniu|at)\b|\d)", re.IGNORECASE
)
# What makes an attribution an attribution and not a sentence ending in "wrote:": a date,
# a time, an address, or "you".
_ATTRIBUTION_EVIDENCE = re.compile(r"\b(19|20)\d\d\b|\d{1,2}[:.h]\d\d|@|\byou\b", re.IGNORECASE)
# Gmail's ISO-dated attribution can lose its "Name <addr>:" tail entirely.
_GMAIL_ISO_DATE = re.compile(r"^[ \t]*\d{4}-\d{2}-\d{2}[ \t]+\d{1,2}:\d{2}[ \t]+GMT[+-]\d{1,2}:?\d{2}\b")

_LIBRARY_ATTRIBUTIONS = [
    re.compile(spec["wrote_header"])
    for spec in MAIL_LANGUAGES.values()
    if isinstance(spec.get("wrote_header"), str)
]
_LIBRARY_KEYWORDS = re.compile(
    r"wrote|schrieb|napsal|skrev|escribió|écrit|scritto|schreef|napisał|nadesłał|写道|작성하였습니다|<.+>:",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class HeaderField:
    is_from: bool


def header_field(line: str) -> HeaderField | None:
    """The pasted-header field this line starts, if any ("From: …", "*Sent:* …", "Von: …")."""
    if len(line) > MAX_MARKER_LINE:
        return None
    match = _HEADER_LINE.match(line)
    if match is None:
        return None
    return HeaderField(is_from=bool(_HEADER_FROM.match(match.group("name"))))


def is_quote(line: str) -> bool:
    return QUOTE.match(line) is not None


def is_empty(line: str) -> bool:
    return _PUNCTUATION_ONLY.match(line) is not None


def is_delimiter(line: str) -> bool:
    return bool(
        _SIGNATURE_DELIMITER.match(line) or _ORIGINAL_MESSAGE.match(line) or _FORWARD_INTRO.match(line)
    )


def is_forward_marker(line: str) -> bool:
    return bool(_ORIGINAL_MESSAGE.match(line) or _FORWARD_INTRO.match(line))


def is_forwarded_message(line: str) -> bool:
    """A marker that says a mail is forwarded ("Forwarded message", "Begin forwarded message:"),
    not replied to ("Original Message", which Outlook also writes above a reply's history)."""
    marker = _ORIGINAL_MESSAGE.match(line)
    return bool(_FORWARD_INTRO.match(line) or (marker and _FORWARDED_WORDS.match(marker.group(1))))


def is_signature_line(line: str) -> bool:
    """A mobile/app signature: a short line such as "Sent from my iPhone" or "Envoyé de mon iPad"."""
    return len(line) <= 160 and len(line.split()) <= 14 and _SENT_FROM.match(line) is not None


def _strip_quote_marker(line: str) -> str:
    return re.sub(r"^[ \t]*>[ \t]?", "", line)


def _window_text(lines: list[str], start: int, end: int) -> str:
    # Continuation lines of a wrapped attribution can start with ">" ("> wrote:" after "<addr"),
    # which is not a quote but the tail of "<addr\n> wrote:".
    rest = [_strip_quote_marker(line).strip() for line in lines[start + 1 : end + 1]]
    parts = [lines[start].strip(), *rest]
    return " ".join(part for part in parts if part)


def _valid_attribution(text: str) -> bool:
    return (
        len(text) <= MAX_MARKER_LINE
        and _ATTRIBUTION_END.search(text[-200:]) is not None
        and _ATTRIBUTION_EVIDENCE.search(text) is not None
    )


def _attribution_window(lines: list[str], end: int) -> int | None:
    """The first line of an attribution ending on line `end`, or None."""
    if len(lines[end]) > MAX_MARKER_LINE or not lines[end].rstrip().endswith((":", "：", "--")):
        return None
    earliest = max(0, end - _MAX_WINDOW_LINES + 1)
    # Every ending pattern fits in the last 200 characters; searching only those keeps this cheap.
    if not _ATTRIBUTION_END.search(_window_text(lines, earliest, end)[-200:]):
        return None
    smallest: int | None = None
    anchored: int | None = None
    for start in range(end, earliest - 1, -1):
        line = lines[start]
        if start < end and (is_quote(line) or len(line) > MAX_MARKER_LINE):
            break
        if not line.strip():
            continue
        text = _window_text(lines, start, end)
        if smallest is None:
            if not _valid_attribution(text):
                continue
            smallest = start
        elif len(text) > MAX_MARKER_LINE:
            break  # a wider window keeps the ending and the evidence; only its length can fail
        if anchored is None and _ATTRIBUTION_START.match(line):
            anchored = start  # the closest opening word: never reach back into the reply itself
    found = anchored if anchored is not None else smallest
    if found == end and is_quote(lines[end]):
        return None  # an attribution inside quoted history is part of that history
    return found


def _library_attributions(lines: list[str], kinds: list[str]) -> set[int]:
    """Lines mail-parser-reply recognises as a "wrote" header (one line, or two joined)."""
    marked: set[int] = set()
    for index, line in enumerate(lines):
        if kinds[index] == "B" or len(line) > MAX_MARKER_LINE or is_quote(line):
            continue
        if not _LIBRARY_KEYWORDS.search(line):
            continue
        for start, end in ((index, index), (index, index + 1), (index - 1, index)):
            if start < 0 or end >= len(lines) or len(lines[start]) + len(lines[end]) > MAX_MARKER_LINE:
                continue
            if start < index and is_quote(lines[start]):
                continue
            text = "\n".join(lines[start : end + 1])
            if _ATTRIBUTION_EVIDENCE.search(text) and any(p.search(text) for p in _LIBRARY_ATTRIBUTIONS):
                marked.update(range(start, end + 1))
                break
    return marked


def classify_lines(lines: list[str], budget: int = 200_000) -> list[str]:
    """One kind letter per line (see the module docstring).

    Only the first `budget` characters are examined; lines past it count as the customer's text,
    so a huge body costs bounded time and, when in doubt, is kept.
    """
    examined = limit = 0
    while limit < len(lines) and examined + len(lines[limit]) < budget:
        examined += len(lines[limit]) + 1
        limit += 1
    return _classify(lines[:limit]) + ["T"] * (len(lines) - limit)


def _classify(lines: list[str]) -> list[str]:
    kinds = ["T"] * len(lines)
    for index, line in enumerate(lines):
        if len(line) <= MAX_MARKER_LINE and UNDERSCORES.match(line):
            kinds[index] = "U"
        elif is_delimiter(line):
            kinds[index] = "D"
        elif is_empty(line):
            kinds[index] = "E"
        elif is_quote(line):
            kinds[index] = "Q"
        elif is_signature_line(line):
            kinds[index] = "S"
        elif header_field(line) is not None:
            kinds[index] = "H"
        elif _GMAIL_ISO_DATE.match(line):
            kinds[index] = "B"
    for end in range(len(lines)):
        start = _attribution_window(lines, end)
        if start is not None:
            for index in range(start, end + 1):
                kinds[index] = "B"
    for index in _library_attributions(lines, kinds):
        kinds[index] = "B"
    return kinds
