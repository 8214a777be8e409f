"""Customer mails for the intake benchmarks: the peer benchmark's mix, deterministic per seed.

The peer figures (django-helpdesk, the bare aiosmtpd limit) were measured with
`/work/shared/bench-peers/gen_mail.py`. When that folder is present, `peer_mix()` loads it at run
time and produces exactly the messages the peer imports, so both sides see the same bytes. Without
it, `own_mix()` builds the same mix with our own texts:

    plain   50 %  text/plain, 0.6–2.5 KB body
    html    20 %  multipart/alternative, the same text as HTML
    attach  10 %  text body plus one 4–24 KB attachment (pdf, png or txt)
    reply   20 %  "Re: [queue-<n>] ..." with In-Reply-To an unknown Message-ID and the quote below
    about 15 % carry a Cc; the average message is about 4.6 KB.

Messages are returned with CRLF line endings, as an MTA sends them.
"""

from __future__ import annotations

import importlib.util
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from pathlib import Path
from types import ModuleType

PEER_DIR = Path("/work/shared/bench-peers")
SUPPORT_ADDRESS = "support@helpdesk.example"
MIX = {"plain": 0.50, "html": 0.20, "attach": 0.10, "reply": 0.20}

_PEOPLE = [
    "Ada Moreau",
    "Bo Lindqvist",
    "Céline Roy",
    "Dario Ferri",
    "Elif Kaya",
    "Femi Okafor",
    "Greta Lund",
    "Hana Sato",
    "Ivo Marić",
    "Jana Novák",
    "Kofi Mensah",
    "Lena Vogel",
]
_DOMAINS = ["example.com", "client.example", "mail.example.org", "shop.example", "corp.example.net"]
_SUBJECTS = [
    "Password reset link does not arrive",
    "Invoice {n} lists the wrong address",
    "Order {n} still not shipped",
    "Report export fails with a timeout",
    "Please add a second administrator",
    "Charged twice for the same month",
    "API answers 500 on /v2/items",
    "App closes right after start on Android",
    "Single sign-on stopped working",
    "Import stuck at 98 %",
]
_SENTENCES = [
    "This started yesterday and happens every time we try.",
    "We already cleared the cache and tried another browser.",
    "Our whole team is blocked by this, so a quick answer would help a lot.",
    "Our customer number is {n}, in case you need it.",
    'The page only says "Something went wrong" and nothing else.',
    "Nothing changed on our side since last week, when it still worked.",
    "Could you look into it and tell us what to do next?",
    "We have about {n} users on the business plan.",
    "Bitte prüfen Sie das so bald wie möglich, danke.",
    "Merci de nous répondre rapidement.",
    "To reproduce: open the dashboard, press Export and wait two minutes.",
]
_REPLIES = [
    "Thanks, but the problem is still there.",
    "That fixed it, thank you!",
    "Now I get a different error.",
    "Is there any news on this?",
]


def _address(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(_PEOPLE)
    local = name.encode("ascii", "ignore").decode().lower().replace(" ", ".")
    return name, f"{local}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"


def _text(rng: random.Random, low: int, high: int, name: str) -> str:
    target = rng.randint(low, high)
    paragraphs = ["Hello support,"]
    while sum(map(len, paragraphs)) < target:
        paragraphs.append(" ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(2, 5))))
    paragraphs.append(f"Best regards,\n{name}")
    return "\n\n".join(paragraphs).replace("{n}", str(rng.randint(1000, 99999))) + "\n"


def own_message(kind: str, rng: random.Random, to_addr: str = SUPPORT_ADDRESS) -> EmailMessage:
    name, addr = _address(rng)
    domain = addr.rpartition("@")[2]
    when = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 30 * 86400))
    subject = rng.choice(_SUBJECTS).replace("{n}", str(rng.randint(1000, 99999)))
    message = EmailMessage()
    message["Received"] = f"from mx.{domain} by mx.helpdesk.example; {format_datetime(when)}"
    message["From"] = f"{name} <{addr}>"
    message["To"] = to_addr
    if rng.random() < 0.15:
        message["Cc"] = "{} <{}>".format(*_address(rng))
    message["Date"] = format_datetime(when)
    message["Message-ID"] = f"<{rng.getrandbits(64):016x}@{domain}>"
    if kind == "reply":
        message["Subject"] = f"Re: [queue-{rng.randint(1, 50)}] {subject}"
        earlier = f"<ack.{rng.getrandbits(64):x}@helpdesk.example>"
        message["In-Reply-To"] = earlier
        message["References"] = earlier
        quoted = "\n".join("> " + line for line in _text(rng, 400, 1200, "Support").splitlines())
        message.set_content(f"{rng.choice(_REPLIES)}\n\n{name}\n\nSupport <{to_addr}> wrote:\n{quoted}\n")
        return message
    message["Subject"] = subject
    text = _text(rng, 600, 2500, name)
    message.set_content(text)
    if kind == "html":
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n"))
        message.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
    elif kind == "attach":
        size = rng.randint(4 * 1024, 24 * 1024)
        extension = rng.choice(["pdf", "png", "txt"])
        if extension == "txt":
            log_lines = (
                f"2026-11-{rng.randint(1, 28):02d} ERROR request {rng.getrandbits(32):x} failed"
                for _ in range(size // 50)
            )
            message.add_attachment(
                "\n".join(log_lines).encode(), maintype="text", subtype="plain", filename="error-log.txt"
            )
        else:
            maintype, subtype = ("application", "pdf") if extension == "pdf" else ("image", "png")
            message.add_attachment(
                rng.randbytes(size), maintype=maintype, subtype=subtype, filename=f"file.{extension}"
            )
    return message


def kinds(count: int, seed: int) -> list[str]:
    """Exact counts per kind, in a deterministic shuffled order (as the peer generator does)."""
    out: list[str] = []
    names = list(MIX)
    for name in names[:-1]:
        out += [name] * round(count * MIX[name])
    out += [names[-1]] * (count - len(out))
    random.Random(seed).shuffle(out)
    return out


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def own_mix(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [_crlf(own_message(kind, rng).as_bytes()) for kind in kinds(count, seed)]


def _load_peer_generator() -> ModuleType | None:
    path = PEER_DIR / "gen_mail.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("peer_gen_mail", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_mix(count: int, seed: int = 1) -> list[bytes] | None:
    """The messages the peer's timed import reads (same seed, queue and seed tickets), or None."""
    peer = _load_peer_generator()
    if peer is None:
        return None
    rng = random.Random(seed)
    return [
        _crlf(
            peer.make_message(
                kind, rng, to_addr=SUPPORT_ADDRESS, queue_slug="queue", reply_ticket_ids=range(1, 51)
            ).as_bytes()
        )
        for kind in peer.kinds_for(count, peer.DEFAULT_MIX, seed)
    ]


def customer_mix(count: int, seed: int = 1) -> tuple[list[bytes], str]:
    """The peer's messages when its generator is present, else ours; and which one it was."""
    peer = peer_mix(count, seed)
    if peer is not None:
        return peer, f"peer generator ({PEER_DIR / 'gen_mail.py'}, seed {seed})"
    return own_mix(count, seed), f"bench/mailgen.py own mix (seed {seed})"


def tagged_message(tag: str, seed: int) -> bytes:
    """A plain customer mail whose subject carries `tag`, to find its card in the emulator."""
    rng = random.Random(seed)
    message = own_message("plain", rng)
    del message["Subject"]
    message["Subject"] = f"Cannot export report {tag}"
    return _crlf(message.as_bytes())
