"""The peer: django-helpdesk's email import, run by the peer benchmark's own script.

Nothing of django-helpdesk is in this repository. `/work/shared/bench-peers/setup.sh` builds its
venv under /tmp/peerbench (run here if it is missing), and `bench_helpdesk.py` from that folder
imports N generated messages with `get_email` in a fresh process and prints JSON. With the same
N and seed it reads exactly the messages `mailgen.customer_mix` sends to our intake.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PEER_DIR = Path("/work/shared/bench-peers")
PEER_HOME = Path("/tmp/peerbench")
PEER_PYTHON = PEER_HOME / "venv-helpdesk" / "bin" / "python"
TEMPLATE_DB = PEER_HOME / "hd-template.sqlite3"


def ensure_peer() -> str | None:
    """None when the peer can run; otherwise why it cannot (the figure is then skipped)."""
    if not (PEER_DIR / "bench_helpdesk.py").exists():
        return f"{PEER_DIR} is not present"
    if PEER_PYTHON.exists():
        return None
    print(f"building the peer's venv with {PEER_DIR / 'setup.sh'} (a few minutes, once)", flush=True)
    built = subprocess.run(["bash", str(PEER_DIR / "setup.sh")], capture_output=True, text=True)
    if built.returncode != 0 or not PEER_PYTHON.exists():
        return f"setup.sh failed ({built.returncode}): {built.stderr.strip().splitlines()[-1:]}"
    return None


def run_peer(count: int, seed: int = 1, timeout: float = 900.0) -> dict[str, Any]:
    """One timed import of `count` messages in a fresh process (Django's default SQLite mode)."""
    with tempfile.TemporaryDirectory(prefix="sd-bench-peer-") as workdir:
        out = Path(workdir) / "result.json"
        subprocess.run(
            [
                str(PEER_PYTHON),
                str(PEER_DIR / "bench_helpdesk.py"),
                "--n",
                str(count),
                "--gen-seed",
                str(seed),
                "--workdir",
                str(Path(workdir) / "run"),
                "--template-db",
                str(TEMPLATE_DB),
                "--json",
                str(out),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        return dict(json.loads(out.read_text()))
