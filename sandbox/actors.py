"""What people do in the workspace, and the events and payloads Slack sends the app because of it.

`UserActions` is mixed into `SlackEmulator`: `emulator.user_post(...)`, `emulator.user_command(...)`.
A person can only act where Slack would let them (post in a channel they are a member of, edit their
own messages); anything else raises `ValueError`, since it is a mistake in the test, not a case to emulate.
"""

from __future__ import annotations

import copy
import functools
import secrets
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sandbox.api_files import new_file, share_file
from sandbox.delivery import Dispatcher, Interaction
from sandbox.events import (
    app_home_opened_event,
    block_actions_payload,
    build_action,
    left_event,
    member_event,
    message_action_payload,
    message_changed_event,
    message_deleted_event,
    message_event,
    reaction_event,
    slash_command_form,
    view_submission_payload,
)
from sandbox.render import message_json
from sandbox.rich_text import rich_text_block
from sandbox.state import JSON, Ephemeral, Message, ResponseUrlPost, SlackState
from sandbox.workspace import Channel, User

FileSpec = tuple[str, bytes] | tuple[str, bytes, str] | dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
MAX_RESPONSE_URL_USES = 5  # Slack: up to 5 times within 30 minutes


def locked(method: F) -> F:
    """Run a person's action under the state lock: web handlers read the same objects on another thread."""

    @functools.wraps(method)
    def run(self: UserActions, *args: Any, **kwargs: Any) -> Any:
        with self.state.lock:
            return method(self, *args, **kwargs)

    return cast(F, run)


class UserActions:
    state: SlackState
    dispatcher: Dispatcher

    # -- lookups -------------------------------------------------------------------------------
    def _user(self, user_id: str) -> User:
        user = self.state.workspace.users.get(user_id)
        if user is None:
            raise ValueError(f"no user {user_id} in the workspace")
        return user

    def _channel(self, channel_id: str, user: User | None = None) -> Channel:
        channel = self.state.workspace.channels.get(channel_id)
        if channel is None:
            raise ValueError(f"no channel {channel_id} in the workspace")
        if user is not None and user.id not in channel.members:
            raise ValueError(f"{user.id} is not a member of {channel_id}")
        return channel

    def _message(self, channel: Channel, ts: str) -> Message:
        message = self.state.find_message(channel.id, ts)
        if message is None or message.deleted:
            raise ValueError(f"no message {ts} in {channel.id}")
        return message

    def _response_url(self, channel: str | None, user: str, message_ts: str | None = None) -> str:
        key = secrets.token_urlsafe(12)
        with self.state.lock:
            self.state.response_urls[key] = {
                "channel": channel,
                "user": user,
                "message_ts": message_ts,
                "uses": 0,
            }
        return f"{self.state.base_url}_sandbox/response/{key}"

    # -- messages ------------------------------------------------------------------------------
    @locked
    def user_post(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[JSON] | None = None,
        files: list[FileSpec] | None = None,
        reply_broadcast: bool = False,
    ) -> str:
        """Post as a person; returns the ts. The app gets a `message` event (`file_share` with files)."""
        person = self._user(user)
        place = self._channel(channel, person)
        state = self.state
        if blocks is None and text:
            blocks = [rich_text_block(text)]
        message = Message(
            channel=place.id,
            ts=state.next_ts(),
            user=person.id,
            team=person.team_id,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            client_msg_id=str(uuid.uuid4()),
            reply_broadcast=reply_broadcast and thread_ts is not None,
        )
        if message.reply_broadcast:
            message.subtype = "thread_broadcast"
        for spec in files or []:
            name, content, mimetype = _file_parts(spec)
            file = new_file(state, name=name, user=person.id, content=content, mimetype=mimetype)
            message.files.append(file.id)
        if message.files:
            message.subtype = "file_share"
            for file_id in message.files:
                share_file(state, state.files[file_id], message)
        state.add_message(message)
        if message.visible:
            self.dispatcher.emit(message_event(state, message), place.id)
        return message.ts

    @locked
    def user_edit(
        self, user: str, channel: str, ts: str, new_text: str, blocks: list[JSON] | None = None
    ) -> None:
        person = self._user(user)
        place = self._channel(channel)
        message = self._message(place, ts)
        if message.user != person.id:
            raise ValueError(f"{user} cannot edit a message of {message.user}")
        state = self.state
        previous = message_json(state, message)
        message.previous_texts.append(message.text)
        message.text = new_text
        message.blocks = blocks if blocks is not None else [rich_text_block(new_text)]
        message.edited = {"user": person.id, "ts": state.next_ts()}
        state.changed()
        self.dispatcher.emit(message_changed_event(state, message, previous), place.id)

    @locked
    def user_delete(self, user: str, channel: str, ts: str) -> None:
        person = self._user(user)
        place = self._channel(channel)
        message = self._message(place, ts)
        if message.user != person.id and not person.is_admin:
            raise ValueError(f"{user} cannot delete a message of {message.user}")
        previous = message_json(self.state, message)
        message.deleted = True
        self.state.changed()
        self.dispatcher.emit(message_deleted_event(self.state, message, previous), place.id)

    @locked
    def user_react(self, user: str, channel: str, ts: str, name: str) -> None:
        person = self._user(user)
        place = self._channel(channel, person)
        message = self._message(place, ts)
        name = name.strip(":")
        users = message.reactions.setdefault(name, [])
        if person.id in users:
            return  # Slack's client toggles; reacting twice changes nothing and sends nothing
        users.append(person.id)
        self.state.changed()
        self.dispatcher.emit(reaction_event(self.state, "reaction_added", person.id, message, name), place.id)

    @locked
    def user_unreact(self, user: str, channel: str, ts: str, name: str) -> None:
        person = self._user(user)
        place = self._channel(channel, person)
        message = self._message(place, ts)
        name = name.strip(":")
        users = message.reactions.get(name, [])
        if person.id not in users:
            return
        users.remove(person.id)
        if not users:
            del message.reactions[name]
        self.state.changed()
        self.dispatcher.emit(
            reaction_event(self.state, "reaction_removed", person.id, message, name), place.id
        )

    # -- membership and home -------------------------------------------------------------------
    @locked
    def user_join(self, user: str, channel: str, inviter: str | None = None) -> None:
        person = self._user(user)
        place = self._channel(channel)
        if person.id in place.members:
            return
        place.members.append(person.id)
        self.state.changed()
        self.dispatcher.emit(
            member_event(self.state, "member_joined_channel", person.id, place, inviter), place.id
        )

    @locked
    def user_leave(self, user: str, channel: str, by: str | None = None) -> None:
        """`user` leaves `channel`, or is removed from it `by` someone. The bot's own removal is also
        told as Slack tells a removed member, `channel_left` (`group_left` for a private channel),
        with the remover as `actor_id`."""
        person = self._user(user)
        place = self._channel(channel)
        if person.id not in place.members:
            return
        # Built while the person is still a member, so the app (a member) is due the event.
        event = member_event(self.state, "member_left_channel", person.id, place)
        self.dispatcher.emit(event, place.id)
        if person.id == self.state.workspace.bot_user:
            self.dispatcher.emit(left_event(self.state, place, by or person.id), place.id)
        place.members.remove(person.id)
        self.state.changed()

    @locked
    def user_open_home(self, user: str) -> None:
        person = self._user(user)
        view_id = self.state.home_views.get(person.id)
        view = self.state.views.get(view_id or "")
        dm_channel = "D0" + person.id.removeprefix("U")
        self.dispatcher.emit(app_home_opened_event(self.state, person.id, dm_channel, view), None)

    # -- commands and interactivity ------------------------------------------------------------
    @locked
    def user_command(self, user: str, channel: str, command: str, text: str = "") -> Interaction:
        """Run a slash command; the app gets Slack's form and a response_url served by the emulator."""
        person = self._user(user)
        place = self._channel(channel)
        trigger_id = self.state.new_trigger_id()
        response_url = self._response_url(place.id, person.id)
        form = slash_command_form(self.state, person, place, command, text, response_url, trigger_id)
        interaction = Interaction("command", dict(form), trigger_id, response_url, place.id, person.id)
        return self.dispatcher.interact(interaction)

    @locked
    def user_shortcut(
        self, user: str, channel: str, ts: str, callback_id: str = "create_ticket"
    ) -> Interaction:
        """Use a message shortcut on a message (a `message_action` payload)."""
        person = self._user(user)
        place = self._channel(channel, person)
        message = self._message(place, ts)
        trigger_id = self.state.new_trigger_id()
        response_url = self._response_url(place.id, person.id, message.ts)
        payload = message_action_payload(
            self.state, person, place, message, callback_id, response_url, trigger_id
        )
        interaction = Interaction(
            "shortcut", payload, trigger_id, response_url, place.id, person.id, message.ts
        )
        return self.dispatcher.interact(interaction)

    @locked
    def user_block_action(
        self, user: str, channel: str, message_ts: str, action: str | JSON, value: str | None = None
    ) -> Interaction:
        """Click a button (or pick an option) in a message: a `block_actions` payload.

        `action` is an action_id found in the message's blocks, or a full action object.
        """
        person = self._user(user)
        place = self._channel(channel, person)
        message = self._message(place, message_ts)
        action_obj = (
            build_action(message, action, value, self.state)
            if isinstance(action, str)
            else copy.deepcopy(action)
        )
        trigger_id = self.state.new_trigger_id()
        response_url = self._response_url(place.id, person.id, message.ts)
        payload = block_actions_payload(
            self.state, person, place, message, action_obj, response_url, trigger_id
        )
        interaction = Interaction(
            "block_action", payload, trigger_id, response_url, place.id, person.id, message.ts
        )
        return self.dispatcher.interact(interaction)

    @locked
    def user_view_submission(self, user: str, view_id: str, values: dict[str, dict[str, Any]]) -> Interaction:
        """Submit an open modal; `values` is {block_id: {action_id: "text" or a full value object}}."""
        person = self._user(user)
        view = self.state.views.get(view_id)
        if view is None or view.closed:
            raise ValueError(f"no open view {view_id}")
        trigger_id = self.state.new_trigger_id()
        payload = view_submission_payload(self.state, person, view, values, trigger_id)
        interaction = Interaction(
            "view_submission", payload, trigger_id, None, None, person.id, view_id=view.id
        )
        return self.dispatcher.interact(interaction)

    # -- what the app answers ------------------------------------------------------------------
    def _on_answer(self, interaction: Interaction) -> None:
        """Apply the app's synchronous answer: a command's reply, a view submission's response_action."""
        answer = interaction.ack_payload
        if not answer:
            if interaction.kind == "view_submission" and interaction.acked:
                self._close_view(interaction.view_id)
            return
        if interaction.kind == "command" and interaction.response_url:
            self.apply_response(interaction.response_url, answer, source="ack")
        elif interaction.kind == "view_submission":
            action = answer.get("response_action")
            view = self.state.views.get(interaction.view_id or "")
            if action == "update" and view is not None and isinstance(answer.get("view"), dict):
                view.body = answer["view"]
            elif action != "errors" and action != "push":
                self._close_view(interaction.view_id)

    def _close_view(self, view_id: str | None) -> None:
        view = self.state.views.get(view_id or "")
        if view is not None:
            view.closed = True
            self.state.changed()

    @locked
    def apply_response(self, response_url: str, body: JSON, source: str = "response_url") -> bool:
        """What Slack does with a message sent to a response_url (or a command's direct answer).

        Returns False when the URL is unknown or used up.
        """
        state = self.state
        key = response_url.rstrip("/").rsplit("/", 1)[-1]
        with state.lock:
            context = state.response_urls.get(key)
            if context is None or (source != "ack" and context["uses"] >= MAX_RESPONSE_URL_USES):
                return False
            if source != "ack":
                context["uses"] += 1
            state.response_posts.append(
                ResponseUrlPost(
                    response_url, copy.deepcopy(body), context["channel"], context["user"], source
                )
            )
        channel = context["channel"]
        original = state.find_message(channel, context["message_ts"]) if context["message_ts"] else None
        text = str(body.get("text", ""))
        blocks = body.get("blocks")
        if _truthy(body.get("delete_original")) and original is not None:
            previous = message_json(state, original)
            original.deleted = True
            self.dispatcher.emit(message_deleted_event(state, original, previous), channel)
        elif _truthy(body.get("replace_original")) and original is not None:
            previous = message_json(state, original)
            original.text, original.blocks = text, blocks
            original.edited = {"user": state.workspace.bot_user, "ts": state.next_ts()}
            self.dispatcher.emit(message_changed_event(state, original, previous), channel)
        elif body.get("response_type") == "in_channel" and channel:
            ws = state.workspace
            message = Message(
                channel=channel,
                ts=state.next_ts(),
                user=ws.bot_user,
                team=ws.home.id,
                text=text,
                blocks=blocks,
                thread_ts=body.get("thread_ts"),
                bot_id=ws.bot_id,
                app_id=ws.app_id,
            )
            state.add_message(message)
            self.dispatcher.emit(message_event(state, message), channel)
        else:
            with state.lock:
                state.ephemerals.append(
                    Ephemeral(channel or "", context["user"], text, blocks, state.next_ts(), source=source)
                )
        state.changed()
        return True


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _file_parts(spec: FileSpec) -> tuple[str, bytes, str | None]:
    """(name, content, mimetype) from a tuple or a {"name", "content", "mimetype"?} dict."""
    if isinstance(spec, dict):
        return str(spec["name"]), bytes(spec["content"]), spec.get("mimetype")
    if len(spec) == 3:
        return spec[0], spec[1], spec[2]
    return spec[0], spec[1], None
