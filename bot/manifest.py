"""The Slack app manifest: scopes, bot events, /desk, the "Create ticket" shortcut, interactivity.

`app.manifest.yml` in the repository is this text rendered for https://servicedesk.example.com;
a test keeps the two equal.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from store.settings import SettingsError

EXAMPLE_URL = "https://servicedesk.example.com"
EVENTS_PATH = "/slack/events"

BOT_SCOPES = (
    "channels:history",  # message.channels: customers' and staff's messages
    "groups:history",  # message.groups: private triage or intake channels
    "channels:read",  # conversations.info / members: who is staff, is a channel shared
    "groups:read",
    "chat:write",  # cards, thread lines, acknowledgements
    "chat:write.customize",  # staff replies in a customer's thread under the staff member's name
    "commands",  # /desk and the message shortcut
    "reactions:read",  # the ticket emoji turns a message into a ticket
    "reactions:write",  # receipts and the note marker
    "users:read",  # names for mentions, Slack Connect users' teams
    "users:read.email",  # the customer record of a Slack user
    "usergroups:read",  # @group mentions in messages
    "files:read",  # copy customers' and staff's files into the file store
    "files:write",  # upload attachments into threads
)

BOT_EVENTS = (
    "message.channels",
    "message.groups",
    "reaction_added",
    "member_joined_channel",
    "member_left_channel",
    "channel_left",
    "group_left",
    "app_home_opened",
)

_TEMPLATE = """\
display_information:
  name: servicedesk
  description: A Slack-first service desk - email and Slack requests become tickets worked in threads
  background_color: "#2c2d30"
features:
  app_home:
    home_tab_enabled: true
    messages_tab_enabled: false
    messages_tab_read_only_enabled: true
  bot_user:
    display_name: servicedesk
    always_online: true
  slash_commands:
    - command: /desk
{command_url}      description: Triage tickets (try /desk help)
      usage_hint: "help | close 42 | assign 42 @alice | list mine"
      should_escape: true
  shortcuts:
    - name: Create ticket
      type: message
      callback_id: create_ticket
      description: Turn this message into a support ticket
oauth_config:
  scopes:
    bot:
{scopes}
settings:
  event_subscriptions:
{events_url}    bot_events:
{events}
  interactivity:
    is_enabled: true
{interactivity_url}  org_deploy_enabled: false
  socket_mode_enabled: {socket_mode}
  token_rotation_enabled: false
"""


def check_public_url(url: str) -> None:
    """Slack posts to the request URLs as written: they must be absolute http(s) URLs."""
    if not url.strip():
        raise SettingsError(
            f"--url: is empty; give this service's public URL such as {EXAMPLE_URL}, "
            "or leave --url out for Socket Mode"
        )
    if "@" in url.partition("://")[2].partition("/")[0]:
        # Slack sends no credentials from a request URL, and the manifest is pasted into Slack's
        # settings page and shared: the password would be published. It is not echoed here either.
        raise SettingsError(
            "--url: a user name or password in the URL would be published with the manifest, "
            "and Slack does not send it; give the URL without user:password@"
        )
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    # "?" and "#" even when empty: the request path is added after them, into the query or fragment.
    if not valid or "?" in url or "#" in url or any(c.isspace() for c in url):
        raise SettingsError(f"--url: expected an absolute http(s) URL such as {EXAMPLE_URL} (got {url!r})")


def render_manifest(url: str | None) -> str:
    """The manifest with request URLs at `url` (HTTP mode), or for Socket Mode when `url` is None.

    A `url` that is not an absolute http(s) URL raises SettingsError (one line naming --url).
    """
    if url is not None:
        # An empty --url (a variable that was not set: `--url "$PUBLIC_URL"`) is refused rather
        # than read as "Socket Mode": that manifest would not match the HTTP service it was for.
        check_public_url(url)
    # The request URL itself given as the base (copied from Slack's settings page) is taken as it
    # is: Slack would otherwise post to /slack/events/slack/events, which answers 404.
    base = url.rstrip("/").removesuffix(EVENTS_PATH) if url else None
    endpoint = f"{base}{EVENTS_PATH}" if base is not None else None
    return _TEMPLATE.format(
        command_url=f"      url: {endpoint}\n" if endpoint else "",
        scopes="\n".join(f"      - {scope}" for scope in BOT_SCOPES),
        events_url=f"    request_url: {endpoint}\n" if endpoint else "",
        events="\n".join(f"      - {event}" for event in BOT_EVENTS),
        interactivity_url=f"    request_url: {endpoint}\n" if endpoint else "",
        socket_mode="false" if endpoint else "true",
    )
