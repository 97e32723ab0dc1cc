"""The application commands (what `tools/register_commands.py` PUTs) and how to read them back (pure).

/ask and the "Ask AstraBot" message command are for everyone; /nexus is for server managers. The
`default_member_permissions` on /nexus only hides it in Discord's UI (a guild can override it under
Server Settings > Integrations), so the endpoint checks the caller again with `is_nexus_admin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from astrabot.domain.credit import candidate_models
from astrabot.domain.interaction import CHAT_INPUT, MESSAGE_COMMAND, user_of
from astrabot.domain.messages import truncate
from astrabot.settings import Settings

ASK: Final = "ask"
ASK_MESSAGE: Final = "Ask AstraBot"
NEXUS: Final = "nexus"
NEXUS_CREDITS: Final = "credits"
NEXUS_STATUS: Final = "status"
NEXUS_DIAGNOSTICS: Final = "diagnostics"
TEST_ALERT_OPTION: Final = "test_alert"

# Option types
SUB_COMMAND: Final = 1
STRING: Final = 3
BOOLEAN: Final = 5

# Permission bits (member.permissions is a decimal string of these)
ADMINISTRATOR: Final = 1 << 3
MANAGE_GUILD: Final = 1 << 5

STRING_OPTION_MAX_LENGTH: Final = 6000  # Discord's ceiling for a STRING option's max_length
MAX_CHOICES: Final = 25
CHOICE_NAME_LIMIT: Final = 100


def model_choices(settings: Settings) -> list[str]:
    """The models a user may pick: the default first, then each fallback (Discord allows 25)."""
    return candidate_models(settings.default_model, settings.fallback_models)[:MAX_CHOICES]


def ask_command(settings: Settings) -> dict[str, Any]:
    return {
        "type": CHAT_INPUT,
        "name": ASK,
        "description": "Ask AstraBot a question (answers are sized to the credits left)",
        "options": [
            {
                "type": STRING,
                "name": "prompt",
                "description": "Your question",
                "required": True,
                "max_length": min(settings.max_prompt_chars, STRING_OPTION_MAX_LENGTH),
            },
            {
                "type": STRING,
                "name": "model",
                "description": f"Which model answers (default {truncate(settings.default_model, 60)})",
                "required": False,
                "choices": [
                    {"name": truncate(model, CHOICE_NAME_LIMIT), "value": model}
                    for model in model_choices(settings)
                ],
            },
        ],
    }


def ask_message_command() -> dict[str, Any]:
    # Message commands carry no description: Discord rejects a non-empty one.
    return {"type": MESSAGE_COMMAND, "name": ASK_MESSAGE}


def nexus_command() -> dict[str, Any]:
    def sub(name: str, description: str, options: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"type": SUB_COMMAND, "name": name, "description": description, "options": options or []}

    return {
        "type": CHAT_INPUT,
        "name": NEXUS,
        "description": "AstraBot operator dashboards (credits, health, configuration)",
        "default_member_permissions": str(MANAGE_GUILD),
        "dm_permission": False,
        "options": [
            sub(NEXUS_CREDITS, "Balance, burn rate, forecast and what to do about it"),
            sub(NEXUS_STATUS, "Health of each component and one overall verdict"),
            sub(
                NEXUS_DIAGNOSTICS,
                "Effective configuration, recent errors, versions",
                [
                    {
                        "type": BOOLEAN,
                        "name": TEST_ALERT_OPTION,
                        "description": "Also send a test alert through the real alert path",
                        "required": False,
                    }
                ],
            ),
        ],
    }


def command_definitions(settings: Settings) -> list[dict[str, Any]]:
    return [ask_command(settings), ask_message_command(), nexus_command()]


# --- reading an interaction back -----------------------------------------------------------------
def subcommand_of(data: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The first subcommand's name and its option values (name -> value); (None, {}) if there is none."""
    for option in data.get("options") or []:
        if isinstance(option, dict) and option.get("type") == SUB_COMMAND:
            values = {
                o["name"]: o.get("value")
                for o in option.get("options") or []
                if isinstance(o, dict) and isinstance(o.get("name"), str)
            }
            name = option.get("name")
            return (name if isinstance(name, str) else None), values
    return None, {}


def _permission_bits(member: dict[str, Any]) -> int:
    raw = member.get("permissions")
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 40:
        return 0
    return int(raw)


def is_nexus_admin(
    interaction: dict[str, Any], *, user_ids: Iterable[str] = (), role_ids: Iterable[str] = ()
) -> bool:
    """ADMINISTRATOR or MANAGE_GUILD in `member.permissions`, a listed user, or a listed role.

    In a DM there is no member (so no permissions and no roles): only a listed user passes.
    """
    user_id = str(user_of(interaction).get("id") or "")
    if user_id and user_id in set(user_ids):
        return True
    member = interaction.get("member")
    if not isinstance(member, dict):
        return False
    if _permission_bits(member) & (ADMINISTRATOR | MANAGE_GUILD):
        return True
    roles = member.get("roles")
    allowed_roles = set(role_ids)
    return isinstance(roles, list) and any(str(role) in allowed_roles for role in roles)
