"""One attempt at one outbox row, made effectively once.

Every post carries message metadata naming its row and part; every posted ts and every file id is
recorded on the row (`outbox.record_progress`) before the next step, so a later attempt skips what
is done. The row's last step is not recorded on its own: what it produced goes into the row with
the outcome (`with_progress`), in the one transaction that marks the row done, which saves a write
transaction per post; a crash between that call and the settling leaves an attempt counted, so the
next attempt looks for the post as below.

When an earlier attempt ended without knowing what it did (a timeout, a reset after the post took
effect, a worker killed mid-call or before its outcome was settled), its attempt counter says so,
and this attempt first reads the thread for that metadata and records what it finds instead of
posting again. A file upload is recognised by the file id Slack gave before the bytes went up.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bot.delivery.calls import SlackCalls, Stop
from bot.delivery.reads import FileToSend
from bot.outcomes import Done, Outcome, Retry
from store import outbox
from store.db import Database
from store.files import FileStore
from store.outbox import OutboxItem

log = logging.getLogger(__name__)

METADATA_EVENT = "servicedesk_delivery"
# A copy may be a few seconds older than its row by Slack's clock: look a little further back.
LOOKBACK_MARGIN = timedelta(minutes=5)
LOOKUP_PAGE = 200
LOOKUP_MAX_PAGES = 25
# Slack shares at most this many files in one completeUploadExternal.
FILES_PER_SHARE = 10
# Where a row keeps the digest of the text its copy was posted with (see `Attempt.post`), and what
# it keeps when a part was found in Slack rather than posted by this attempt: no digest equals it.
POSTED_DIGEST = "body"
UNKNOWN_DIGEST = "unknown"
OCTET_STREAM = "application/octet-stream"
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=15)


# A part of this row found in Slack: its ts and its text.
FoundPart = tuple[str, str | None]


def delivery_metadata(row_id: int, part: int) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"outbox_id": row_id, "part": part}}


def metadata_part(message: dict[str, Any], row_id: int) -> int | None:
    """The part number a Slack message carries for this row, or None if it is not ours."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return None
    payload = metadata.get("event_payload")
    if not isinstance(payload, dict):
        return None
    try:
        if int(payload.get("outbox_id", -1)) != row_id:
            return None
        return int(payload.get("part", 0))
    except (TypeError, ValueError):
        return None


class Attempt:
    def __init__(self, db: Database, calls: SlackCalls, files: FileStore, item: OutboxItem) -> None:
        self.db = db
        self.calls = calls
        self.files = files
        self.item = item
        self.progress: dict[str, Any] = dict(item.result)
        # attempts counts this one: more than one means an earlier attempt may have posted more
        # than it recorded (deferrals for rate limits and pauses do not count).
        self.uncertain = item.attempts > 1
        self._found: dict[tuple[str, str | None], dict[int, FoundPart]] = {}
        # Progress of the last step, written with the outcome rather than in its own transaction.
        self._unrecorded: dict[str, Any] = {}

    async def record(self, **values: Any) -> None:
        kept = await asyncio.to_thread(
            outbox.record_progress, self.db, self.item.id, self.item.claimed_by, values
        )
        if not kept:
            # The lease lapsed and another worker took the row: it carries on from what is
            # recorded; this attempt must not do anything more.
            raise Stop(Retry("the delivery was taken over by another worker"))
        self.progress.update(values)

    async def _keep(self, last_step: bool, **values: Any) -> None:
        """Record progress now, or, for the row's last step, keep it for the settling transaction."""
        if not last_step:
            await self.record(**values)
            return
        self._unrecorded.update(values)
        self.progress.update(values)

    async def with_progress(self, outcome: Outcome) -> Outcome:
        """The outcome to settle, carrying what the last step produced.

        Done records it with the row. Any other outcome after a last step (none is expected: a last
        step is followed by nothing that fails) records it on its own first, so it is never lost.
        """
        if not self._unrecorded:
            return outcome
        if isinstance(outcome, Done):
            return Done(result={**self._unrecorded, **outcome.result}, apply=outcome.apply)
        await asyncio.to_thread(
            outbox.record_progress, self.db, self.item.id, self.item.claimed_by, self._unrecorded
        )
        return outcome

    # ----- posts -----

    async def post(
        self,
        channel: str,
        thread_ts: str | None,
        part: int,
        *,
        last_step: bool = False,
        digest: str | None = None,
        **message: Any,
    ) -> str:
        """Post part `part` of this row once; its ts.

        `last_step`: nothing that can fail follows in this attempt (no further part, no upload), so
        the ts is written with the outcome instead of in a transaction of its own.
        `digest`: what the message said as this attempt read it, kept with the ts, so that a later
        attempt reusing the part knows what the copy says (`posted_digest`), not what it reads then.
        """
        key = f"ts:{part}"
        if key in self.progress:
            return str(self.progress[key])
        if self.uncertain:
            found = await self._lookup(channel, thread_ts)
            if part in found:
                log.info(
                    "delivery %s part %s was posted by an earlier attempt; recorded, not posted again",
                    self.item.id,
                    part,
                )
                ts, posted_text = found[part]
                # The part found says what this attempt would post: it went up with this text. Else
                # an earlier text, or one Slack reworded: the copy is compared as changed.
                same = posted_text == message.get("text")
                kept = {POSTED_DIGEST: digest if same else UNKNOWN_DIGEST} if digest else {}
                await self._keep(last_step, **{key: ts}, **kept)
                return ts
        arguments = {k: v for k, v in message.items() if v is not None}
        data = await self.calls.call(
            "chat.postMessage",
            lambda: self.calls.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                metadata=delivery_metadata(self.item.id, part),
                unfurl_links=False,
                unfurl_media=False,
                **arguments,
            ),
            channel=channel,
        )
        ts = str(data["ts"])
        await self._keep(last_step, **{key: ts}, **({POSTED_DIGEST: digest} if digest else {}))
        return ts

    def posted_digest(self, read_now: str) -> str:
        """The digest of the text the copy was posted with: the one kept with its first part by
        whichever attempt posted it, else (nothing kept yet) the text this attempt read."""
        return str(self.progress.get(POSTED_DIGEST) or read_now)

    async def _lookup(self, channel: str, thread_ts: str | None) -> dict[int, FoundPart]:
        """Parts of this row already in the thread (or, for a top-level post, the channel)."""
        where = (channel, thread_ts)
        if where not in self._found:
            self._found[where] = await self._read_marked(channel, thread_ts)
        return self._found[where]

    async def _read_marked(self, channel: str, thread_ts: str | None) -> dict[int, FoundPart]:
        oldest = _oldest(self.item.created_at)
        found: dict[int, FoundPart] = {}
        cursor: str | None = None
        for _page in range(LOOKUP_MAX_PAGES):
            data = await self._read_page(channel, thread_ts, oldest, cursor)
            for message in data.get("messages") or []:
                part = metadata_part(message, self.item.id)
                if part is not None and "ts" in message:
                    found.setdefault(part, (str(message["ts"]), message.get("text")))
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return found

    async def _read_page(
        self, channel: str, thread_ts: str | None, oldest: str | None, cursor: str | None
    ) -> dict[str, Any]:
        client = self.calls.client
        if thread_ts is None:
            return await self.calls.call(
                "conversations.history",
                lambda: client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=LOOKUP_PAGE,
                    cursor=cursor,
                ),
            )
        return await self.calls.call(
            "conversations.replies",
            lambda: client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                oldest=oldest,
                include_all_metadata=True,
                limit=LOOKUP_PAGE,
                cursor=cursor,
            ),
            ok_errors=frozenset({"thread_not_found"}),
        )

    # ----- files (the files v2 flow) -----

    async def upload(self, channel: str, thread_ts: str, files: tuple[FileToSend, ...]) -> dict[int, str]:
        """Upload `files` into the thread once; attachment id -> Slack file id."""
        shared: dict[int, str] = {}
        for start in range(0, len(files), FILES_PER_SHARE):
            batch = files[start : start + FILES_PER_SHARE]
            shared.update(await self._upload_batch(channel, thread_ts, batch, start // FILES_PER_SHARE))
        return shared

    async def _upload_batch(
        self, channel: str, thread_ts: str, batch: tuple[FileToSend, ...], number: int
    ) -> dict[int, str]:
        done_key = f"{outbox.SHARED_FILES_PREFIX}{number}"
        if done_key in self.progress:
            return {int(k): str(v) for k, v in self.progress[done_key].items()}
        started: list[dict[str, str]] = [
            self.progress.get(f"file:{file.attachment_id}") or {} for file in batch
        ]
        if all(started) and await self._shared_already(started[0]["id"]):
            # An earlier attempt completed the share and was cut off before recording it.
            known = {str(file.attachment_id): entry["id"] for file, entry in zip(batch, started, strict=True)}
            await self.record(**{done_key: known})
            return {int(k): v for k, v in known.items()}
        ids: dict[str, str] = {}
        for file in batch:
            ids[str(file.attachment_id)] = await self._upload_bytes(file)
        await self.calls.call(
            "files.completeUploadExternal",
            lambda: self.calls.client.files_completeUploadExternal(
                files=[{"id": ids[str(file.attachment_id)], "title": file.filename} for file in batch],
                channel_id=channel,
                thread_ts=thread_ts,
            ),
            channel=channel,
        )
        await self.record(**{done_key: ids})
        return {int(k): v for k, v in ids.items()}

    async def _shared_already(self, file_id: str) -> bool:
        data = await self.calls.call(
            "files.info",
            lambda: self.calls.client.files_info(file=file_id),
            ok_errors=frozenset({"file_not_found", "file_deleted"}),
        )
        return bool(data.get("ok"))

    async def _upload_bytes(self, file: FileToSend) -> str:
        """Send one file's bytes to its upload URL (obtained and recorded first); its file id."""
        content = await asyncio.to_thread(self.files.get, file.sha256)
        key = f"file:{file.attachment_id}"
        entry = self.progress.get(key)
        if entry and await self._post_bytes(str(entry["url"]), content):
            return str(entry["id"])
        # No URL yet, or the recorded one is spent: ask for a new one.
        data = await self.calls.call(
            "files.getUploadURLExternal",
            lambda: self.calls.client.files_getUploadURLExternal(filename=file.filename, length=len(content)),
        )
        entry = {"id": str(data["file_id"]), "url": str(data["upload_url"])}
        await self.record(**{key: entry})
        if not await self._post_bytes(entry["url"], content):
            raise Stop(Retry(f"the upload of {file.filename} was refused"))
        return entry["id"]

    async def _post_bytes(self, url: str, content: bytes) -> bool:
        """POST the bytes; False when the URL is unknown or used (start again with a new one)."""
        try:
            async with (
                aiohttp.ClientSession(timeout=UPLOAD_TIMEOUT) as session,
                session.post(url, data=content, headers={"Content-Type": OCTET_STREAM}) as answer,
            ):
                await answer.read()
                if answer.status >= 500:
                    raise Stop(Retry(f"file upload: HTTP {answer.status}"))
                return answer.status < 400
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Stop(Retry(f"file upload: no answer ({type(exc).__name__})")) from exc


def _oldest(created_at: datetime | None) -> str | None:
    if created_at is None:
        return None
    return f"{(created_at - LOOKBACK_MARGIN).timestamp():.6f}"
