"""Helpers shared by the bench scripts: summaries, the machine, ports, processes.

Not a test module and not part of the product: the bench scripts import it from their own folder
(`python bench/bench_x.py` puts bench/ first on sys.path).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
CODE_ENV = "SERVICEDESK_BENCH_CODE_DIR"
PRODUCT_PACKAGES = ("bot", "mail", "store", "sandbox", "migrations")
RESULTS_DIR = Path(os.environ.get("SERVICEDESK_BENCH_RESULTS", "/tmp/servicedesk-bench/results"))
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Summary:
    """Median of several runs with the spread, the way every figure is reported."""

    median: float
    low: float
    high: float
    runs: int

    def text(self, unit: str = "", digits: int = 1) -> str:
        if self.runs == 0:
            return "n/a"
        f = f"{{:.{digits}f}}"
        runs = "1 run" if self.runs == 1 else f"{self.runs} runs"
        return f"{f.format(self.median)}{unit} ({f.format(self.low)}–{f.format(self.high)}, {runs})"

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}


def summarize(values: Iterable[float | None]) -> Summary:
    kept = [v for v in values if v is not None]
    if not kept:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    return Summary(statistics.median(kept), min(kept), max(kept), len(kept))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); enough for latency figures of a few thousand samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """What the figures were measured on; printed before every result (the machines are shared)."""
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    with contextlib.suppress(OSError, ValueError):
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/loadavg") as loadavg:
            info["loadavg"] = " ".join(loadavg.read().split()[:3])
    except OSError:
        pass
    return info


def print_machine(info: dict[str, Any] | None = None) -> dict[str, Any]:
    info = info or machine()
    print(
        f"machine: {info.get('nproc')} CPUs ({info.get('cpu', '?')}), Python {info['python']}, "
        f"kernel {info['kernel']}, load {info.get('loadavg', '?')}, {info['date_utc']} UTC",
        flush=True,
    )
    return info


def save_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    print(f"saved {path}", flush=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s") from None
            time.sleep(0.05)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (works for any process we started)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB: VmRSS now, VmHWM the peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def python() -> str:
    """The interpreter running the bench: the project's venv when started as documented."""
    return sys.executable


# ----- which product code is measured -----


def add_code_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--code",
        metavar="REF",
        help="measure the product as committed at REF (e.g. HEAD) instead of the working tree; "
        "useful while others have half-finished edits in the tree",
    )


def committed_code(ref: str) -> tuple[str, Path]:
    """The product packages as committed at `ref` (`git archive`), extracted once per commit."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    target = RESULTS_DIR.parent / f"code-{sha}"
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha, *PRODUCT_PACKAGES], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(target)
    return sha, target


def _use_committed_code() -> None:
    """Re-run this script on a snapshot of committed code when `--code REF` is given.

    Runs when benchlib is imported, before any product module is: `git archive REF` of the
    product packages goes to a folder that is put first on PYTHONPATH (ahead of the editable
    install), for this process and for the `servicedesk serve` it starts.
    """
    if "--code" not in sys.argv or os.environ.get(CODE_ENV):
        return
    ref = sys.argv[sys.argv.index("--code") + 1]
    sha, target = committed_code(ref)
    print(f"measuring the product as committed at {ref} ({sha}), from {target}", flush=True)
    os.environ[CODE_ENV] = str(target)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(target), str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.execv(sys.executable, [sys.executable, *sys.argv])


_use_committed_code()
