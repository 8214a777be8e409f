"""The files v2 flow: files.getUploadURLExternal, the upload itself, files.completeUploadExternal.

As on Slack: step 1 returns an absolute `upload_url` and a `file_id`; step 2 POSTs the bytes there
(raw, or multipart as some clients send); step 3 names the files and shares them into a channel or
thread as one message with `files`. Unlike Slack, the share is synchronous (Slack's `shares` can lag).
"""

from __future__ import annotations

import mimetypes
import secrets
import time

from sandbox.api_base import TS_PATTERN, Call, SlackError, method
from sandbox.events import message_changed_event, message_deleted_event, message_event
from sandbox.render import file_json, message_json
from sandbox.state import JSON, File, Message, SlackState, random_id

MAX_FILE_BYTES = 1024 * 1024 * 1024  # Slack's 1 GB upload limit


def guess_mimetype(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def new_file(
    state: SlackState,
    *,
    name: str,
    user: str,
    content: bytes = b"",
    title: str | None = None,
    mimetype: str | None = None,
) -> File:
    """Register a file (uploaded already when content is given, as a person's attachment is)."""
    file = File(
        id=random_id("F"),
        name=name,
        title=title or name,
        mimetype=mimetype or guess_mimetype(name),
        user=user,
        team=state.workspace.team_of(user),
        created=int(time.time()),
        content=content,
        uploaded=bool(content),
        completed=bool(content),
    )
    with state.lock:
        state.files[file.id] = file
    return file


def share_file(state: SlackState, file: File, message: Message) -> None:
    channel = state.workspace.channels[message.channel]
    share: JSON = {
        "reply_users": [],
        "reply_users_count": 0,
        "reply_count": 0,
        "ts": message.ts,
        "channel_name": channel.name,
        "team_id": state.workspace.home.id,
        "share_user_id": message.user,
        "source": "UNKNOWN",
        "is_silent_share": False,
    }
    if message.is_reply:
        share["thread_ts"] = message.thread_ts
    file.shares.setdefault(channel.id, []).append(share)


@method("files.getUploadURLExternal", scope="files:write")
def files_get_upload_url_external(call: Call) -> JSON:
    state = call.state
    filename = call.require("filename")
    length = call.number("length", 0)
    if length <= 0:  # Slack takes a length of 0 for a missing one: an empty file cannot be uploaded
        raise SlackError(
            "invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: length"]}
        )
    if length > MAX_FILE_BYTES:
        raise SlackError("file_too_large")
    file = new_file(state, name=filename, user=state.workspace.bot_user)
    file.length = length
    file.alt_txt = call.get("alt_txt")
    file.upload_key = secrets.token_urlsafe(18)
    with state.lock:
        state.uploads[file.upload_key] = file.id
    # An absolute URL on the emulator, as Slack's is on files.slack.com.
    return {"ok": True, "upload_url": f"{state.base_url}upload/v1/{file.upload_key}", "file_id": file.id}


def receive_upload(state: SlackState, key: str, content: bytes) -> File | None:
    """Step 2: the bytes POSTed to an upload_url. Returns None for an unknown URL."""
    with state.lock:
        file_id = state.uploads.get(key)
        file = state.files.get(file_id or "")
        if file is None or file.completed:
            return None
        file.content = content
        file.uploaded = True
    state.changed()
    return file


@method("files.completeUploadExternal", scope="files:write")
def files_complete_upload_external(call: Call) -> JSON:
    state = call.state
    entries = call.structured("files")
    if not isinstance(entries, list) or not entries:
        raise SlackError("invalid_arguments")
    files: list[File] = []
    for entry in entries:
        file = state.files.get(str(entry.get("id", ""))) if isinstance(entry, dict) else None
        # A file never uploaded (step 2 skipped or failed) is as unknown to Slack as a wrong id.
        if file is None or file.completed or not file.uploaded:
            raise SlackError("file_not_found")
        if entry.get("title"):
            file.title = str(entry["title"])
        files.append(file)
    channel_ids = [c for c in (call.get("channels") or "").split(",") if c]
    if call.get("channel_id"):
        channel_ids.insert(0, call.get("channel_id") or "")
    thread_ts = call.get("thread_ts")
    if thread_ts is not None and not TS_PATTERN.match(thread_ts):
        raise SlackError("invalid_thread_ts")
    channels = [call.channel_ref(c, need_member=True) for c in channel_ids]
    for file in files:
        file.completed = True
    ws = state.workspace
    for channel in channels:
        message = Message(
            channel=channel.id,
            ts=state.next_ts(),
            user=ws.bot_user,
            team=ws.home.id,
            text=call.get("initial_comment") or "",
            thread_ts=thread_ts,
            subtype="file_share",
            bot_id=ws.bot_id,
            app_id=ws.app_id,
            files=[f.id for f in files],
        )
        for file in files:
            share_file(state, file, message)
        state.add_message(message)
        if message.visible:
            state.emit(message_event(state, message), channel.id)
    state.changed()
    return {"ok": True, "files": [file_json(state, f) for f in files]}


@method("files.info", scope="files:read")
def files_info(call: Call) -> JSON:
    file = call.state.files.get(call.get("file") or "")
    if file is None or not file.completed:
        raise SlackError("file_not_found")
    if file.deleted:
        raise SlackError("file_deleted")
    return {
        "ok": True,
        "file": file_json(call.state, file),
        "comments": [],
        "response_metadata": {"next_cursor": ""},
    }


@method("files.delete", scope="files:write")
def files_delete(call: Call) -> JSON:
    """A bot deletes the files it uploaded; each message that shared one loses it, and a message left
    with neither text nor files is deleted (the events say so, as Slack's do)."""
    state = call.state
    file = state.files.get(call.require("file"))
    if file is None or not file.completed:
        raise SlackError("file_not_found")
    if file.deleted:
        raise SlackError("file_deleted")
    if file.user != state.workspace.bot_user:
        raise SlackError("cant_delete_file")
    file.deleted = True
    for channel_id, shares in file.shares.items():
        for share in shares:
            message = state.find_message(channel_id, str(share["ts"]))
            if message is None or message.deleted or file.id not in message.files:
                continue
            previous = message_json(state, message)
            message.files = [kept for kept in message.files if kept != file.id]
            if message.files or message.text:
                state.emit(message_changed_event(state, message, previous), channel_id)
            else:
                message.deleted = True
                state.emit(message_deleted_event(state, message, previous), channel_id)
    state.changed()
    return {"ok": True}
