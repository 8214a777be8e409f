"""Charset labels that mail clients really send but Python's codec registry does not know,
through SMTP into the running service.

Outlook writes Hebrew as `iso-8859-8-i` and Thai as `windows-874`; Apple Mail writes `x-mac-cyrillic`;
others write `x-gbk`, `cp-850`, `windows-31j`. They are all labels of the WHATWG Encoding Standard
(what browsers and mail clients decode). Unknown to `codecs.lookup`, they fell back to windows-1252 and
reached Slack as mojibake. DESIGN "Email in" 6: "Any charset ...: shown as well as it can be".
"""

from __future__ import annotations

import base64

import pytest

from tests.e2e.conftest import SUPPORT, RunningDesk

CASES = [
    ("iso-8859-8-i", "שלום, המדפסת לא עובדת", "iso8859_8"),
    ("windows-874", "สวัสดีครับ เครื่องพิมพ์เสีย", "cp874"),
    ("x-mac-cyrillic", "Привет, принтер сломался", "mac_cyrillic"),
    ("x-gbk", "你好，打印机坏了", "gbk"),
    ("cp-850", "Grüße, der Drucker ist kaputt", "cp850"),
    ("windows-31j", "こんにちは、プリンターが壊れました", "cp932"),
]


@pytest.mark.parametrize(("label", "text", "codec"), CASES, ids=[c[0] for c in CASES])
def test_a_whatwg_charset_label_is_decoded_in_subject_and_body(
    service: RunningDesk, label: str, text: str, codec: str
) -> None:
    encoded_subject = base64.b64encode(text.encode(codec)).decode()
    raw = (
        (
            f"From: Dana <dana@customer.test>\r\nTo: {SUPPORT}\r\n"
            f"Subject: =?{label}?B?{encoded_subject}?=\r\nMessage-ID: <cs-{label}@customer.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={label}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + text.encode(codec)
        + b"\r\n"
    )
    assert service.send_mail(raw, mail_from="dana@customer.test")[0] == 250
    card = service.wait_for(service.card, "the card")
    # The subject on the card and the body in the thread, as the customer wrote them.
    assert text in (card.text or ""), card.text
    service.wait_for_thread_text(card.ts, text)
