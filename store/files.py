"""Content-addressed file store: attachments and raw emails, kept under their SHA-256.

Names customers chose are never used on disk. Writes are atomic and durable (temporary file,
fsync, rename, fsync of the folder), so a file referenced by a committed row is always whole and
always there, whatever crashes after the commit.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

# Files are created readable and writable by their owner and group, less what the umask takes away.
# Roles on other machines (web serving a download, a worker uploading to Slack) may run as other users
# of one group on the shared folder; `mkstemp`'s 0600 would lock them out. Others never get access.
FILE_MODE = 0o660
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        # Directories this process made or found: a mkdir per file (two levels) is a syscall each,
        # and nothing here removes a directory once made.
        self._made: set[Path] = set()

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        try:
            self._write(target, data)
        except FileNotFoundError:
            # Its folder went away under the running service (removed, or a backup restored
            # without it): made again, once.
            self._made.discard(target.parent)
            self._write(target, data)
        return digest

    def _write(self, target: Path, data: bytes) -> None:
        folder = target.parent
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            # The new folders' own names must be on disk too before anything in them counts.
            _sync_folder(folder.parent)
            _sync_folder(self.root)
            self._made.add(folder)
        temporary = str(folder / f".incoming-{secrets.token_hex(8)}")
        fd = os.open(temporary, CREATE_FLAGS, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        # A rename is on disk only once its folder is (POSIX): without this, a crash after the
        # database commit that names the file could leave the file under its temporary name.
        _sync_folder(folder)

    def usable_problem(self) -> str | None:
        """None when files can be kept here (the folder is made if missing), else why not: checked at
        start, so a folder that cannot be written stops `serve` instead of failing every mail."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            reason = (error.strerror or type(error).__name__).lower()
            return f"cannot keep files in {str(self.root)!r} ({reason})"
        return None

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def size_words(size: int) -> str:
    """A file's size as a reader takes it in: "512 bytes", "1.9 KB", "25.0 MB" (never "0.0 MB")."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
