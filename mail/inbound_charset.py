"""Bytes to text for inbound mail, whatever charset the sender declared (or got wrong).

Mail in the wild labels its text with a charset that is missing, misspelt, unknown to Python
("x-unknown"), narrower than what was really written ("gb2312" for GBK, "iso-8859-1" for
windows-1252) or simply wrong (UTF-8 bytes labelled "iso-8859-1", Shift_JIS labelled latin-1).
`decode_text` never raises and always returns *something* readable.
"""

from __future__ import annotations

import codecs
import re

# The WHATWG Encoding Standard maps these labels to the superset browsers actually use, because
# that is what the sending software really produced (e.g. Outlook writes GBK bytes as "gb2312").
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "euc_cn": "gb18030",
    "latin_1": "cp1252",
    "iso8859_1": "cp1252",
    "ascii": "cp1252",
    "iso8859_9": "cp1254",
    "iso8859_11": "cp874",
    "tis_620": "cp874",
    "euc_kr": "cp949",
    "ks_c_5601_1987": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}

# Codecs Python knows that must never be applied to untrusted bytes as a "charset": they are
# not charsets at all, or they interpret escape sequences.
_REFUSED = {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"}

# Stateful 7-bit and non-ASCII-compatible encodings: their bytes can be pure ASCII (ISO-2022-JP,
# UTF-7) or contain NULs (UTF-16), so the ASCII and UTF-8 shortcuts below must not pre-empt them.
_DECLARED_FIRST_PREFIXES = ("iso2022", "utf_16", "utf_32", "utf_7", "hz")

_CHARSET_NAME = re.compile(r"^[A-Za-z0-9_.:+-]{1,40}$")

# Labels of the WHATWG Encoding Standard (what browsers and mail clients decode) that Python's codec
# registry does not know: Outlook's Hebrew "iso-8859-8-i" and Thai "windows-874", Apple's
# "x-mac-cyrillic", Microsoft's "windows-31j", the "x-" forms. Keys are lowercased labels.
_WHATWG_LABELS = {
    "iso-8859-8-i": "iso8859_8",
    "iso_8859-8-i": "iso8859_8",
    "csiso88598i": "iso8859_8",
    "logical": "iso8859_8",
    "iso-8859-8-e": "iso8859_8",
    "csiso88598e": "iso8859_8",
    "visual": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "iso-8859-6-e": "iso8859_6",
    "csiso88596i": "iso8859_6",
    "csiso88596e": "iso8859_6",
    "windows-874": "cp874",
    "dos-874": "cp874",
    "windows-31j": "cp932",
    "x-sjis": "cp932",
    "csshiftjis": "cp932",
    "x-euc-jp": "euc_jp",
    "cn-big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "x-gbk": "gb18030",
    "csgb2312": "gb18030",
    "windows-949": "cp949",
    "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-ukrainian": "mac_cyrillic",
    "x-mac-ce": "mac_latin2",
    "koi8-ru": "koi8_u",
    "unicode-1-1-utf-8": "utf_8",
    "unicode11utf8": "utf_8",
    "unicode20utf8": "utf_8",
    "x-unicode20utf8": "utf_8",
}
# "cp-850", "x-cp1251", "windows-1257", "ibm-437": a code page number under some prefix.
_CODE_PAGE = re.compile(r"^(?:x-)?(?:cp|windows|ibm|ms|dos)[-_]?(\d{3,4})$")


def lookup_charset(declared: str | None) -> str | None:
    """The Python codec name for a declared MIME charset, or None when unusable."""
    if not declared:
        return None
    name = declared.strip().strip("\"'").split("*", 1)[0]  # RFC 2231 "utf-8*en" language suffix
    if not _CHARSET_NAME.match(name):
        return None
    label = name.lower()
    code_page = _CODE_PAGE.match(label)
    name = _WHATWG_LABELS.get(label) or (f"cp{code_page.group(1)}" if code_page else name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # bytes.decode() refuses binary codecs (zlib, base64) itself; this check says so explicitly.
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    codec = info.name.replace("-", "_")
    return _SUPERSETS.get(codec, codec)


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode `data` as best we can: never raises, loses nothing that could be read."""
    if not data:
        return ""
    codec = lookup_charset(declared)
    if codec is not None and codec.startswith(_DECLARED_FIRST_PREFIXES):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    if data.isascii():
        return data.decode("ascii")
    # Bytes that form valid UTF-8 with non-ASCII characters are UTF-8 whatever the label says:
    # legacy single- and multi-byte text practically never happens to be valid UTF-8, while
    # "UTF-8 labelled as latin-1/gb2312" is a common sender bug.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec in (None, "utf_8"):
        # Text labelled UTF-8 (or not usably labelled) that is mostly valid UTF-8 is UTF-8 with a few
        # broken bytes: a mailer cut a line or an encoded word inside a character. Reading all of it
        # as windows-1252 would garble every other non-ASCII character for the sake of one.
        mostly = _mostly_utf8(data)
        if mostly is not None:
            return mostly
    if codec is not None and codec != "utf_8":
        # The declared charset, with U+FFFD for the few broken bytes: better than re-reading a
        # whole GBK text as windows-1252 because of one bad byte.
        try:
            return data.decode(codec, errors="replace")
        except LookupError:
            pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte.
        return data.decode("latin-1")


def _mostly_utf8(data: bytes) -> str | None:
    """`data` as UTF-8 with U+FFFD for broken bytes, when its valid multi-byte characters outnumber
    its broken sequences; None otherwise. Legacy text is (nearly) all broken sequences: latin-1 "é"
    is one byte E9 that no continuation byte follows."""
    text = data.decode("utf-8", errors="replace")
    # Each maximal invalid sequence became one U+FFFD; a U+FFFD the sender wrote is EF BF BD.
    broken = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return text if non_ascii - broken > broken else None


def decode_surrogates(text: str) -> str:
    """Repair a str the email package built from undeclared 8-bit bytes (surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            data = text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that did not come from surrogateescape
            data = text.encode("utf-8", errors="replace")
        return decode_text(data)
    return text
