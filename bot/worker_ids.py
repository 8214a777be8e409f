"""Who a worker is, and whether a worker that holds rows on this machine is still alive.

A worker id is `<host>:<pid namespace>:<pid>`. A worker killed on this machine (kill -9, OOM)
leaves its rows claimed until their lease lapses; a worker starting on the same host and in the
same pid namespace can see that the holder's process is gone and give its rows back at once. The
namespace is part of the id so two containers sharing a host name never judge each other's pids.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST_CHARS = 40  # the id must fit outbox.claimed_by (80 characters)


def _pid_namespace() -> str:
    try:
        return str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        return "-"  # no /proc: never reclaim by pid, leases do the work


def local_prefix() -> str:
    return f"{socket.gethostname()[:HOST_CHARS]}:{_pid_namespace()}:"


def default_worker_id() -> str:
    return f"{local_prefix()}{os.getpid()}"


def holder_pid(worker_id: str, prefix: str) -> int | None:
    """The pid in a worker id of this machine and namespace; None for anyone else's id."""
    if not worker_id.startswith(prefix) or prefix.endswith(":-:"):
        return None
    rest = worker_id[len(prefix) :]
    return int(rest) if rest.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # A killed process its parent has not reaped yet is a zombie: it holds nothing any more.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
