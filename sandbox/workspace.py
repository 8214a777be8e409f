"""The people, channels and credentials of an emulated Slack workspace.

`default_workspace()` builds the one every test, `servicedesk demo` and local trial uses; its IDs are
module constants so tests name them instead of repeating string literals. Build another workspace by
calling `add_user` / `add_channel` on a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Credentials the emulator accepts. They look like Slack's so code that checks the prefix works.
BOT_TOKEN = "xoxb-sandbox-token"
APP_TOKEN = "xapp-sandbox-token"
SIGNING_SECRET = "sandbox-signing-secret"
# The legacy verification token Slack still puts in every payload (`token` field).
VERIFICATION_TOKEN = "sandbox-verification-token"

HOME_TEAM = "T0HOME"
HOME_TEAM_NAME = "Acme"
HOME_TEAM_DOMAIN = "acme"
EXTERNAL_TEAM = "T0EXT"
EXTERNAL_TEAM_NAME = "Globex"
EXTERNAL_TEAM_DOMAIN = "globex"

BOT_USER = "U0BOT"
BOT_ID = "B0OURS"
APP_ID = "A0OURS"
BOT_NAME = "servicedesk"

ALICE = "U0ALICE"
BOB = "U0BOB"
CAROL = "U0CAROL"
DAN = "U0EXTDAN"
ERIN = "U0EXTERIN"
OTHER_BOT_USER = "U0OTHERBOT"
OTHER_BOT_ID = "B0OTHER"
OTHER_APP_ID = "A0OTHER"

TRIAGE = "C0TRIAGE"
CONNECT = "C0CONNECT"
HELP = "C0HELP"
EMPTY = "C0EMPTY"

# The bot scopes the app manifest asks for; `auth.test` and every answer report them in x-oauth-scopes.
DEFAULT_SCOPES = (
    "channels:history",
    "channels:join",
    "channels:read",
    "chat:write",
    "chat:write.customize",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "reactions:read",
    "reactions:write",
    "users:read",
    "users:read.email",
    "usergroups:read",
)


def avatar_url(user_id: str, size: int = 72) -> str:
    # Slack serves avatars from its CDN; any stable, absolute https URL does for icon_url.
    return f"https://avatars.sandbox.example/{user_id}_{size}.png"


@dataclass
class Team:
    id: str
    name: str
    domain: str


@dataclass
class User:
    id: str
    team_id: str
    name: str  # the legacy handle (`name` in users.info)
    real_name: str
    display_name: str = ""
    email: str | None = None
    # Slack hides an email unless the user's org shares it; Slack Connect users often hide theirs.
    email_visible: bool = True
    is_bot: bool = False
    bot_id: str | None = None
    app_id: str | None = None
    is_admin: bool = False
    tz: str = "Europe/Berlin"
    deleted: bool = False

    @property
    def image_72(self) -> str:
        return avatar_url(self.id, 72)


@dataclass
class Channel:
    id: str
    name: str
    members: list[str] = field(default_factory=list)
    is_private: bool = False
    is_ext_shared: bool = False
    is_archived: bool = False
    # Teams the channel is shared with (Slack Connect), besides the home team.
    shared_team_ids: list[str] = field(default_factory=list)
    topic: str = ""
    purpose: str = ""
    created: int = 1_700_000_000
    creator: str = ALICE


@dataclass
class Workspace:
    home: Team
    teams: dict[str, Team] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    signing_secret: str = SIGNING_SECRET
    verification_token: str = VERIFICATION_TOKEN
    bot_user: str = BOT_USER
    bot_id: str = BOT_ID
    app_id: str = APP_ID
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))

    def add_team(self, team_id: str, name: str, domain: str) -> Team:
        team = Team(team_id, name, domain)
        self.teams[team_id] = team
        return team

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str,
        *,
        display_name: str = "",
        team_id: str | None = None,
        email: str | None = None,
        email_visible: bool = True,
        **extra: object,
    ) -> User:
        user = User(
            id=user_id,
            team_id=team_id or self.home.id,
            name=name,
            real_name=real_name,
            display_name=display_name,
            email=email,
            email_visible=email_visible,
            **extra,  # type: ignore[arg-type]
        )
        self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: list[str] | tuple[str, ...] = (),
        *,
        is_private: bool = False,
        shared_with: list[str] | tuple[str, ...] = (),
    ) -> Channel:
        channel = Channel(
            id=channel_id,
            name=name,
            members=list(members),
            is_private=is_private,
            is_ext_shared=bool(shared_with),
            shared_team_ids=list(shared_with),
        )
        self.channels[channel_id] = channel
        return channel

    def team_of(self, user_id: str) -> str:
        user = self.users.get(user_id)
        return user.team_id if user else self.home.id

    def channel_by_name(self, name: str) -> Channel | None:
        wanted = name.lstrip("#")
        for channel in self.channels.values():
            if channel.name == wanted:
                return channel
        return None


def default_workspace() -> Workspace:
    """Acme (home) with staff alice and bob, customer carol, and Globex's dan and erin over Slack Connect."""
    ws = Workspace(home=Team(HOME_TEAM, HOME_TEAM_NAME, HOME_TEAM_DOMAIN))
    ws.teams[HOME_TEAM] = ws.home
    ws.add_team(EXTERNAL_TEAM, EXTERNAL_TEAM_NAME, EXTERNAL_TEAM_DOMAIN)

    ws.add_user(BOT_USER, BOT_NAME, "Service Desk", is_bot=True, bot_id=BOT_ID, app_id=APP_ID)
    ws.add_user(ALICE, "alice", "Alice Archer", display_name="alice", email="alice@acme.example")
    ws.add_user(BOB, "bob", "Bob Baker", email="bob@acme.example")
    ws.add_user(CAROL, "carol", "Carol Cole", display_name="carol", email="carol@acme.example")
    ws.add_user(
        DAN, "dan", "Dan Dorsey", display_name="dan", team_id=EXTERNAL_TEAM, email="dan@globex.example"
    )
    ws.add_user(
        ERIN,
        "erin",
        "Erin Eames",
        display_name="erin",
        team_id=EXTERNAL_TEAM,
        email="erin@globex.example",
        email_visible=False,
    )
    ws.add_user(
        OTHER_BOT_USER, "otherbot", "Other Bot", is_bot=True, bot_id=OTHER_BOT_ID, app_id=OTHER_APP_ID
    )

    ws.add_channel(TRIAGE, "triage", [ALICE, BOB, BOT_USER])
    ws.add_channel(CONNECT, "globex-support", [DAN, ERIN, ALICE, BOT_USER], shared_with=[EXTERNAL_TEAM])
    ws.add_channel(HELP, "it-help", [CAROL, ALICE, BOT_USER])
    ws.add_channel(EMPTY, "random", [ALICE, BOB, CAROL])
    return ws
