"""The files v2 flow through slack_sdk's files_upload_v2, and url_private downloads."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, CAROL, CONNECT, DAN, EMPTY, HELP, TRIAGE


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, token: str | None = None, follow: bool = True) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def test_upload_v2_into_a_thread(emulator: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="Ticket #7")["ts"]
    answer = client.files_upload_v2(
        channel=TRIAGE,
        thread_ts=root,
        content="log line\n",
        filename="log.txt",
        initial_comment="from the customer",
    )
    file = answer["file"]
    assert file["name"] == "log.txt" and file["size"] == len(b"log line\n")

    thread = client.conversations_replies(channel=TRIAGE, ts=root)["messages"]
    assert thread[0]["reply_count"] == 1
    shared = thread[1]
    assert shared["text"] == "from the customer"
    assert [f["id"] for f in shared["files"]] == [file["id"]]
    assert TRIAGE in client.files_info(file=file["id"])["file"]["shares"]["public"]


def test_upload_url_is_absolute_and_on_the_emulator(emulator: SlackEmulator, client: WebClient) -> None:
    answer = client.files_getUploadURLExternal(filename="a.bin", length=3)
    assert answer["upload_url"].startswith(emulator.base_url)
    assert answer["file_id"].startswith("F")


def test_an_upload_url_for_an_empty_file_is_refused(client: WebClient) -> None:
    # Slack takes a length of 0 for a missing one: an empty file cannot be uploaded.
    with pytest.raises(SlackApiError) as raised:
        client.files_getUploadURLExternal(filename="empty.txt", length=0)
    assert raised.value.response["error"] == "invalid_arguments"


def test_complete_without_upload_is_refused(client: WebClient) -> None:
    file_id = client.files_getUploadURLExternal(filename="a.bin", length=3)["file_id"]
    with pytest.raises(SlackApiError) as raised:
        client.files_completeUploadExternal(files=[{"id": file_id, "title": "a"}], channel_id=TRIAGE)
    assert raised.value.response["error"] == "file_not_found"


def test_multipart_upload_is_accepted(emulator: SlackEmulator, client: WebClient) -> None:
    answer = client.files_getUploadURLExternal(filename="a.txt", length=5)
    boundary = "sandboxboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(answer["upload_url"], data=body, method="POST")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    client.files_completeUploadExternal(files=[{"id": answer["file_id"]}], channel_id=TRIAGE)
    assert emulator.files[answer["file_id"]].content == b"hello"


def test_url_private_needs_the_bot_token(client: WebClient) -> None:
    file = client.files_upload_v2(channel=TRIAGE, content=b"\x89PNG data", filename="shot.png")["file"]

    status, content_type, body = fetch(file["url_private"], BOT_TOKEN)
    assert (status, content_type, body) == (200, "image/png", b"\x89PNG data")
    status, _, body = fetch(file["url_private_download"], BOT_TOKEN)
    assert (status, body) == (200, b"\x89PNG data")

    # Without the token: a redirect to the sign-in page, which a careless client saves as the file.
    status, _, _ = fetch(file["url_private"], follow=False)
    assert status == 302
    status, content_type, body = fetch(file["url_private"])
    assert (status, content_type) == (200, "text/html")
    assert b"Sign in" in body
    assert fetch(file["url_private"], "xoxb-wrong", follow=False)[0] == 302


def test_files_a_person_posts(emulator: SlackEmulator, client: WebClient) -> None:
    ts = emulator.user_post(CAROL, HELP, "screenshot attached", files=[("error.png", b"png-bytes")])
    event = emulator.events[-1]["event"]
    assert event["subtype"] == "file_share"
    [file] = event["files"]
    assert (file["name"], file["user_team"], file["file_access"]) == ("error.png", "T0HOME", "visible")
    status, content_type, body = fetch(file["url_private_download"], BOT_TOKEN)
    assert (status, content_type, body) == (200, "image/png", b"png-bytes")
    assert emulator.message(HELP, ts).files == [file["id"]]


def test_a_file_from_another_organization_arrives_as_a_stub(
    emulator: SlackEmulator, client: WebClient
) -> None:
    # Slack Connect: the event names the file only; files.info tells the rest.
    ts = emulator.user_post(DAN, CONNECT, "screenshot attached", files=[("error.png", b"png-bytes")])
    [stub] = emulator.events[-1]["event"]["files"]
    assert stub == {
        "id": emulator.message(CONNECT, ts).files[0],
        "mode": "file_access",
        "file_access": "check_file_info",
        "created": 0,
        "timestamp": 0,
        "user": "",
    }
    file = client.files_info(file=stub["id"])["file"]
    assert file["name"] == "error.png" and file["user_team"] != "T0HOME"
    assert fetch(file["url_private_download"], BOT_TOKEN)[2] == b"png-bytes"
    emulator.user_edit(DAN, CONNECT, ts, "screenshot attached (cropped)")
    assert emulator.events[-1]["event"]["message"]["files"] == [stub]


def test_upload_into_a_channel_the_bot_is_not_in(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.files_upload_v2(channel=EMPTY, content="x", filename="x.txt")
    assert raised.value.response["error"] == "not_in_channel"


def test_files_delete_takes_a_file_out_of_its_share(emulator: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="Ticket #7")["ts"]
    alone = client.files_upload_v2(channel=TRIAGE, thread_ts=root, content="a", filename="a.txt")["file"]
    commented = client.files_upload_v2(
        channel=TRIAGE, thread_ts=root, content="b", filename="b.txt", initial_comment="see b"
    )["file"]
    for file in (alone, commented):
        assert client.files_delete(file=file["id"])["ok"]

    thread = client.conversations_replies(channel=TRIAGE, ts=root)["messages"]
    assert [(m["text"], m.get("files", [])) for m in thread[1:]] == [("see b", [])]
    assert [e["event"].get("subtype") for e in emulator.events[-2:]] == ["message_deleted", "message_changed"]
    for gone in (lambda: client.files_delete(file=alone["id"]), lambda: client.files_info(file=alone["id"])):
        with pytest.raises(SlackApiError) as raised:
            gone()
        assert raised.value.response["error"] == "file_deleted"
    assert fetch(alone["url_private_download"], BOT_TOKEN)[0] == 404


def test_a_bot_cannot_delete_a_persons_file(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.user_post(DAN, CONNECT, "screenshot attached", files=[("error.png", b"png-bytes")])
    [file] = emulator.events[-1]["event"]["files"]
    with pytest.raises(SlackApiError) as raised:
        client.files_delete(file=file["id"])
    assert raised.value.response["error"] == "cant_delete_file"
