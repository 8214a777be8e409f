"""Copy the files of a Slack message into the file store, so email and the store never need Slack.

`url_private` answers only with the bot token; without it Slack redirects to its sign-in page,
which a careless client saves as the "file". Slack Connect files of another organization arrive
as stubs (`file_access: check_file_info`) and need `files.info` first. A file that cannot be
copied (too large, refused, gone) does not stop the message: it is named with the reason, for the
triage thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_errors import retry_after
from bot.slack_users import describe_error, is_transient
from store.actions import NewAttachment
from store.files import FileStore, size_words

log = logging.getLogger(__name__)

# Slack attaches at most 10 files to a message; a bound keeps a forged payload from asking for more.
MAX_FILES_PER_MESSAGE = 20
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_TIMEOUT_SECONDS = 120.0
MAX_RETRY_AFTER = 5.0
CHUNK_BYTES = 256 * 1024
# The bot token is only ever sent to Slack's own file hosts (and the configured API host).
SLACK_FILE_DOMAINS = ("slack.com", "slack-edge.com", "slack-files.com", "slack-gov.com")


@dataclass
class CopiedFiles:
    attachments: list[NewAttachment] = field(default_factory=list)
    # One plain sentence per file that was not copied, naming the file and why.
    skipped: list[str] = field(default_factory=list)
    # Every file's name, copied or not, in the message's order (a Slack Connect event names none).
    names: list[str] = field(default_factory=list)
    # The files the sender must send another way (too large, too many): they are told in their thread.
    refused: list[str] = field(default_factory=list)


class FileNotCopied(Exception):
    """This file cannot be copied; the message says why in plain words. `name` is the file's, once
    Slack has told it (a Slack Connect event names none)."""

    name: str | None = None


class FileRefused(FileNotCopied):
    """A file the desk does not take (too large): only the sender can send it another way."""


def safe_filename(name: str, fallback: str = "file") -> str:
    """A name to show and to offer in mail: no path, no control characters, bounded."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    name = re.sub(r"\s+", " ", name)
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = (
            (stem[: 200 - len(extension) - 1] + dot + extension)
            if dot and len(extension) < 16
            else name[:200]
        )
    return name or fallback


def copied_name(info: Mapping[str, Any]) -> str:
    """The name a Slack file is kept under (its name, else its title, else its id), as the copier
    names it and as an edit that removes it is matched."""
    return safe_filename(str(info.get("name") or info.get("title") or ""), str(info.get("id") or "file"))


class SlackFileCopier:
    def __init__(
        self,
        client: AsyncWebClient,
        files: FileStore,
        *,
        token: str | None,
        api_url: str,
        max_bytes: int,
    ) -> None:
        self.client = client
        self.files = files
        self.token = token
        self.max_bytes = max_bytes
        self._api_host = urlparse(api_url).hostname or ""

    async def copy(self, slack_files: Sequence[Mapping[str, Any]]) -> CopiedFiles:
        result = CopiedFiles()
        for index, slack_file in enumerate(slack_files):
            label = safe_filename(str(slack_file.get("name") or slack_file.get("title") or ""), "a file")
            if index >= MAX_FILES_PER_MESSAGE:
                result.skipped.append(f"{label}: more than {MAX_FILES_PER_MESSAGE} files in one message")
                result.refused.append(label)
                continue
            try:
                attachment = await self._copy_one(slack_file)
            except FileNotCopied as reason:
                log.info("file %s not copied: %s", slack_file.get("id"), reason)
                label = reason.name or label
                result.skipped.append(f"{label}: {reason}")
                result.names.append(label)
                if isinstance(reason, FileRefused):
                    result.refused.append(label)
            else:
                result.attachments.append(attachment)
                result.names.append(attachment.filename)
        return result

    async def _copy_one(self, slack_file: Mapping[str, Any]) -> NewAttachment:
        info = await self._full_info(slack_file)
        name = copied_name(info)
        try:
            return await self._copy_described(info, name)
        except FileNotCopied as reason:
            reason.name = name
            raise

    async def _copy_described(self, info: Mapping[str, Any], name: str) -> NewAttachment:
        """The file `info` describes (an event's file object, or `files.info`'s), named `name`."""
        mode = info.get("mode")
        if mode == "tombstone" or info.get("file_access") == "file_not_found":
            raise FileNotCopied("it was deleted in Slack")
        if mode == "hidden_by_limit":
            raise FileNotCopied("Slack hides it (the workspace's plan limits file history)")
        if mode == "external" or info.get("is_external"):
            link = info.get("url_private") or info.get("permalink") or ""
            raise FileNotCopied(f"it is a link to an outside service, not an upload: {link}")
        declared = info.get("size")
        if isinstance(declared, int) and declared > self.max_bytes:
            raise FileRefused(
                f"{size_words(declared)} is more than the {size_words(self.max_bytes)} a file may have here"
            )
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not url:
            raise FileNotCopied("Slack gave no download address for it")
        data = await self._download(url, str(info.get("mimetype") or ""))
        sha256 = await asyncio.to_thread(self.files.put, data)
        return NewAttachment(
            filename=name,
            content_type=str(info.get("mimetype") or "application/octet-stream")[:255],
            size=len(data),
            sha256=sha256,
        )

    async def _full_info(self, slack_file: Mapping[str, Any]) -> Mapping[str, Any]:
        """Slack Connect sends a stub for files of another organization: ask files.info."""
        if slack_file.get("file_access") != "check_file_info" and slack_file.get("url_private"):
            return slack_file
        file_id = slack_file.get("id")
        if not file_id:
            raise FileNotCopied("the event named no file id")
        last_error = ""
        for attempt in range(DOWNLOAD_ATTEMPTS):
            try:
                answer = await self.client.files_info(file=str(file_id))
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
                if not is_transient(error):
                    raise FileNotCopied(f"files.info refused it ({describe_error(error)})") from error
                # A rate limit or an outage passes: try again, as a download does.
                last_error = describe_error(error)
                if attempt + 1 < DOWNLOAD_ATTEMPTS:
                    await asyncio.sleep(max(0.5 * 2 ** (attempt + 1), _retry_after(error)))
                continue
            info = answer.get("file")
            if not isinstance(info, Mapping):
                raise FileNotCopied("files.info said nothing about it")
            return info
        raise FileNotCopied(f"files.info kept failing ({last_error})")

    def _token_may_go_to(self, url: str) -> bool:
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        if host == self._api_host.lower():
            return parsed.scheme in ("http", "https")
        return parsed.scheme == "https" and any(
            host == domain or host.endswith("." + domain) for domain in SLACK_FILE_DOMAINS
        )

    async def _download(self, url: str, mimetype: str) -> bytes:
        if not self.token:
            raise FileNotCopied("there is no bot token to download it with")
        if not self._token_may_go_to(url):
            # A forged payload must not make us hand the token to someone else's server.
            raise FileNotCopied("its address is not one of Slack's file hosts")
        last_error = ""
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.5 * 2**attempt)
            try:
                return await self._fetch(url, mimetype)
            except (aiohttp.ClientError, TimeoutError) as error:
                last_error = f"{type(error).__name__}"
            except _TryAgain as error:
                last_error = str(error)
        raise FileNotCopied(f"the download kept failing ({last_error})")

    async def _fetch(self, url: str, mimetype: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
        headers = {"Authorization": f"Bearer {self.token}"}
        # No redirects: Slack redirects an unauthorised download to its sign-in page, and a
        # redirect elsewhere must not carry the token along.
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            if response.status in (429, 500, 502, 503, 504):
                raise _TryAgain(f"HTTP {response.status}")
            if 300 <= response.status < 400:
                raise FileNotCopied("Slack refused the bot token for it (is files:read granted?)")
            if response.status != 200:
                raise FileNotCopied(f"Slack answered HTTP {response.status}")
            if response.content_type == "text/html" and "html" not in mimetype:
                raise FileNotCopied("Slack sent a web page instead of the file (is files:read granted?)")
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise FileRefused(
                    f"{size_words(response.content_length)} is more than the "
                    f"{size_words(self.max_bytes)} a file may have here"
                )
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                total += len(chunk)
                if total > self.max_bytes:
                    raise FileRefused(
                        f"it is more than the {size_words(self.max_bytes)} a file may have here"
                    )
                chunks.append(chunk)
            return b"".join(chunks)


class _TryAgain(Exception):
    pass


def _retry_after(error: BaseException) -> float:
    """Seconds a 429 asks to wait, at most MAX_RETRY_AFTER (the worker holds the message meanwhile)."""
    if not isinstance(error, SlackApiError):
        return 0.0
    return min(retry_after(error.response.headers, 0.0), MAX_RETRY_AFTER)
