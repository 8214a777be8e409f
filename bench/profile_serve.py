"""Where `servicedesk serve` spends its time under the intake load: py-spy on the running service.

    .venv/bin/pip install py-spy pyinstrument                  # profilers, into the venv only
    .venv/bin/python bench/profile_serve.py                     # 2,000 emails, SQLite
    .venv/bin/python bench/profile_serve.py --backend postgresql --messages 1000 --wall

The same load as figures 1 and 2 (the peer generator's mix, 8 clients reconnecting per message)
while `py-spy record` samples every thread of the service (100 Hz, raw collapsed stacks), from
the first message until the last card is in the emulator. The stacks are summed per function:
"self" is where the samples were taken, "inclusive" where a function was anywhere on the stack;
the same is summed per package (sqlalchemy, aiohttp, slack_sdk ...) at the end.
By default only the thread holding the GIL is sampled, so shares are of the service's Python CPU
time; with --wall every thread is, waiting ones too, which shows where time passes (database
round trips, SQLite's write lock, the thread pool's queue). Our own code is listed apart from
libraries so the product's hot spots stand out; `--focus NAME` splits one function by callee.
The raw stacks are kept for a flame graph (speedscope, flamegraph.pl), and `--stacks FILE`
summarizes them again without a new run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mailgen
import smtpload
from benchlib import RESULTS_DIR, ROOT, add_code_argument, print_machine
from stack import Stack

PY_SPY = Path(sys.executable).with_name("py-spy")
OURS = ("bot/", "mail/", "store/")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`func (/abs/path/bot/worker.py:12)` -> `func (bot/worker.py)`: line numbers dropped."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    # A `--code` snapshot lives in .../code-<sha>/bot/...: keep the path inside the product.
    path = re.sub(r"^.*/code-[0-9a-f]+/", "", path)
    return f"{match['func']} ({path})"


def read_stacks(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            frames = [frame_name(f) for f in stack.split(";")[1:]]  # the first entry is the thread
            if frames:
                stacks.append((frames, int(count_text)))
    return stacks


def focus_on(raw: Path, name: str, top: int) -> str:
    """Where the samples inside functions whose name contains `name` go, by the next frame down."""
    stacks = read_stacks(raw)
    total = sum(count for _, count in stacks)
    inside: Counter[str] = Counter()
    for frames, count in stacks:
        hits = [i for i, frame in enumerate(frames) if frame.startswith(name + " ") or f".{name} " in frame]
        if hits:
            below = frames[hits[-1] + 1] if hits[-1] + 1 < len(frames) else "(itself)"
            inside[below] += count
    lines = [f"\ninside {name}: {100 * sum(inside.values()) / max(1, total):.1f} % of all samples"]
    lines += [f"  {100 * n / max(1, total):5.1f} %  {callee}" for callee, n in inside.most_common(top)]
    return "\n".join(lines)


def package_of(frame: str) -> str:
    """`Session.flush (sqlalchemy/orm/session.py)` -> `sqlalchemy`; `run (threading.py)` -> `threading`."""
    generated = re.search(r"\(<(\w+) generated", frame)  # `_flush (<sqlalchemy generated ...>:2)`
    if generated:
        return generated[1]
    match = FRAME.match(frame)
    return (match["file"] if match else frame).split("/", 1)[0].removesuffix(".py")


def summarize_stacks(raw: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for frames, count in read_stacks(raw):
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
        for package in {package_of(frame) for frame in frames}:
            packages[package] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples"]

    def table(title: str, counter: Counter[str], keep: bool) -> None:
        lines.append(f"\n{title}")
        shown = 0
        for name, count in counter.most_common():
            if keep and not any(f"({part}" in name for part in OURS):
                continue
            lines.append(f"  {100 * count / total:5.1f} %  {name}")
            shown += 1
            if shown >= top:
                break

    table("inclusive, our code", inclusive, keep=True)
    table("self, any code", own, keep=False)
    table("inclusive, any code", inclusive, keep=False)
    table("inclusive, by package (ours: bot, mail, store)", packages, keep=False)
    return "\n".join(lines)


def stop_sampling(spy: subprocess.Popen[bytes]) -> None:
    if spy.poll() is not None:
        return
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="py-spy profile of serve under the intake load.")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--wall",
        action="store_true",
        help="sample every thread, waiting ones too (where time passes), not only the one holding the GIL",
    )
    parser.add_argument(
        "--intake-only",
        action="store_true",
        help="stop sampling when the clients have sent the last message (figure 1's phase)",
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", action="append", default=[], help="split this function by callee")
    parser.add_argument("--stacks", type=Path, help="summarize these raw stacks instead of running the load")
    parser.add_argument("--timeout", type=float, default=600.0)
    add_code_argument(parser)
    args = parser.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"py-spy is not installed in this venv: {sys.executable} -m pip install py-spy")
    if args.stacks:
        print(summarize_stacks(args.stacks, args.top))
        for name in args.focus:
            print(focus_on(args.stacks, name, args.top))
        return
    print_machine()
    messages, source = mailgen.customer_mix(args.messages)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw = RESULTS_DIR / f"serve-{args.backend}-{time.strftime('%Y%m%dT%H%M%S')}.collapsed"
    stack = Stack(args.backend).start()
    command = [str(PY_SPY), "record", "--pid", str(stack.pid), "--rate", "100", "--format", "raw"]
    command += ["--output", str(raw), "--threads", *(["--idle"] if args.wall else ["--gil"])]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # py-spy attaches
        result = smtpload.send_all(stack.smtp_port, messages, clients=args.clients)
        if args.intake_only:
            stop_sampling(spy)
        expected = len(result.accepted)
        stack.wait_until(
            lambda: stack.card_count() >= expected and stack.acknowledgements() >= expected, args.timeout
        )
        print(
            f"{expected} messages from the {source}: intake {result.rate:.0f} msg/s, "
            f"{stack.card_count()} cards, {stack.acknowledgements()} acknowledgements",
            flush=True,
        )
    finally:
        stop_sampling(spy)
        stack.stop()
        stack.cleanup()
    if not raw.exists():
        sys.exit(f"py-spy wrote nothing: {spy.stderr.read().decode() if spy.stderr else ''}")
    print(summarize_stacks(raw, args.top))
    for name in args.focus:
        print(focus_on(raw, name, args.top))
    print(
        f"\nraw stacks: {raw}" + (" (flamegraph.pl can draw them)" if shutil.which("flamegraph.pl") else "")
    )


if __name__ == "__main__":
    main()
