"""Who a worker is, and whether a worker that holds rows on this machine is still alive.

A worker id is `<host>:<machine>:<pid namespace>:<pid>`. A worker killed on this machine (kill -9,
OOM) leaves its rows claimed until their lease lapses; a worker starting on the same machine and
in the same pid namespace can see that the holder's process is gone and give its rows back at
once. A pid means something only there, so the id says where, beyond doubt:
- `<machine>` is a digest of this boot's id (`/proc/sys/kernel/random/boot_id`) and the whole host
  name: two machines whose names agree (or agree in the first 40 characters the id keeps) differ
  here, and so does this machine after a reboot;
- the namespace, so two containers on one machine never judge each other's pids (the root pid
  namespace has the same number on every Linux machine: it alone tells machines nothing apart).
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

# The id must fit outbox.claimed_by (80 characters): 40 + 12 for host and machine, and a pid
# namespace and a pid of at most 10 digits each.
HOST_CHARS = 40
MACHINE_CHARS = 12


def _pid_namespace() -> str:
    try:
        return str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        return "-"  # no /proc: never reclaim by pid, leases do the work


def _machine() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"  # no /proc: never reclaim by pid, leases do the work
    return hashlib.sha256(f"{boot}:{socket.gethostname()}".encode()).hexdigest()[:MACHINE_CHARS]


def local_prefix() -> str:
    return f"{socket.gethostname()[:HOST_CHARS]}:{_machine()}:{_pid_namespace()}:"


def default_worker_id() -> str:
    return f"{local_prefix()}{os.getpid()}"


def holder_pid(worker_id: str, prefix: str) -> int | None:
    """The pid in a worker id of this machine and namespace; None for anyone else's id."""
    if not worker_id.startswith(prefix) or ":-:" in prefix:
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
