"""Reading a Discord interaction object (pure): who asked, what, and how old the token is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
TOKEN_LIFETIME = timedelta(minutes=15)
APPLICATION_COMMAND = 2
CHAT_INPUT = 1
MESSAGE_COMMAND = 3


class InvalidInteraction(ValueError):
    """The interaction lacks what a chat command needs."""


@dataclass(frozen=True)
class ChatRequest:
    interaction_id: str
    token: str
    application_id: str
    user_id: str
    guild_id: str | None
    prompt: str
    model: str | None
    created_at: datetime | None

    def token_expired(self, now: datetime, margin: timedelta = timedelta(seconds=30)) -> bool:
        """Discord's interaction token works for 15 minutes; past that no reply can be delivered."""
        return self.created_at is not None and now >= self.created_at + TOKEN_LIFETIME - margin


def snowflake_time(snowflake: str) -> datetime | None:
    try:
        millis = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def user_of(interaction: dict[str, Any]) -> dict[str, Any]:
    """The invoking user: `member.user` in a guild, `user` in a DM."""
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    return dict(user) if isinstance(user, dict) else {}


def option_values(data: dict[str, Any]) -> dict[str, Any]:
    """Top-level option name -> value of a chat-input command."""
    options = data.get("options") or []
    return {o["name"]: o.get("value") for o in options if isinstance(o, dict) and "name" in o}


def _message_command_text(data: dict[str, Any]) -> str:
    target = str(data.get("target_id", ""))
    messages = (data.get("resolved") or {}).get("messages") or {}
    message = messages.get(target) or {}
    return str(message.get("content") or "").strip()


def parse_chat_request(interaction: dict[str, Any]) -> ChatRequest:
    """The chat request inside an /ask or "Ask AstraBot" interaction, or InvalidInteraction."""
    if not isinstance(interaction, dict) or interaction.get("type") != APPLICATION_COMMAND:
        raise InvalidInteraction("not an application command")
    data = interaction.get("data")
    if not isinstance(data, dict):
        raise InvalidInteraction("missing data")
    token = interaction.get("token")
    interaction_id = interaction.get("id")
    if not isinstance(token, str) or not token or not isinstance(interaction_id, str) or not interaction_id:
        raise InvalidInteraction("missing id or token")
    if data.get("type", CHAT_INPUT) == MESSAGE_COMMAND:
        prompt, model = _message_command_text(data), None
    else:
        options = option_values(data)
        prompt = str(options.get("prompt") or "").strip()
        model = str(options["model"]) if options.get("model") else None
    if not prompt:
        raise InvalidInteraction("empty prompt")
    user_id = str(user_of(interaction).get("id") or "")
    if not user_id:
        raise InvalidInteraction("missing user")
    return ChatRequest(
        interaction_id=interaction_id,
        token=token,
        application_id=str(interaction.get("application_id") or ""),
        user_id=user_id,
        guild_id=interaction.get("guild_id"),
        prompt=prompt,
        model=model,
        created_at=snowflake_time(interaction_id),
    )
