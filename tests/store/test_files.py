"""The content-addressed file store: durable writes, and a folder removed under it made again."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from store.files import FileStore


def test_a_file_is_kept_under_its_hash_and_read_back(tmp_path: Path) -> None:
    files = FileStore(tmp_path / "files")
    digest = files.put(b"raw mail")
    assert digest == hashlib.sha256(b"raw mail").hexdigest()
    assert files.get(digest) == b"raw mail"
    assert files.put(b"raw mail") == digest  # the same content again writes nothing new
    assert not [p for p in files.path_for(digest).parent.iterdir() if p.name.startswith(".incoming-")]


def test_the_rename_and_new_folders_are_synced_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    files = FileStore(tmp_path / "files")
    digest = files.put(b"first")
    folder = files.path_for(digest).parent
    # The new folders' names, the file's content, then the rename (its folder).
    assert synced == [str(folder.parent), str(tmp_path / "files"), synced[2], str(folder)]
    assert synced[2].startswith(str(folder / ".incoming-"))


def test_a_folder_removed_while_running_is_made_again(tmp_path: Path) -> None:
    files = FileStore(tmp_path / "files")
    first = files.put(b"one")
    shutil.rmtree(tmp_path / "files")
    # The same content goes to the same folder, which the store remembers having made.
    assert files.put(b"one") == first
    assert files.get(first) == b"one"


def test_files_are_readable_by_the_group_the_umask_allows_and_never_by_others(tmp_path: Path) -> None:
    # Roles on other machines (a web role serving a download, a worker uploading to Slack) may run as
    # other users of one group on the shared folder: a file readable by its writer alone is lost to
    # them. The operator's umask still has the last word, and others never read customers' files.
    files = FileStore(tmp_path / "files")
    previous = os.umask(0o022)
    try:
        shared = files.put(b"attachment for every role")
        os.umask(0o077)
        private = files.put(b"kept to its owner")
    finally:
        os.umask(previous)
    assert files.path_for(shared).stat().st_mode & 0o777 == 0o640
    assert files.path_for(private).stat().st_mode & 0o777 == 0o600
    assert files.get(shared) == b"attachment for every role"
