"""Discord messages as a person would read them, in a terminal: content, then each embed as a box.

Discord markdown is simplified, not interpreted: `**bold**` is bold, `-# subtext` is dim, `[text](url)`
shows both, `<@&123>` becomes @role. Colour only on a terminal and never with NO_COLOR set. Embeds
have a coloured left bar (like Discord) and no right border: emoji widths differ between terminals,
and a ragged right border reads worse than none.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

EPHEMERAL_FLAG = 1 << 6
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(<?([^)>]+)>?\)")
_ANGLE_URL = re.compile(r"<(https?://[^>\s]+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_USER = re.compile(r"<@!?(\d+)>")


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and bool(getattr(stream, "isatty", lambda: False)())


def width() -> int:
    return max(40, min(shutil.get_terminal_size((100, 24)).columns, 100))


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sgr(code: str, text: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def _inline(text: str, colour: bool) -> str:
    text = _LINK.sub(lambda m: f"{m[1]} ({m[2]})" if m[1] != m[2] else m[2], text)
    text = _ANGLE_URL.sub(r"\1", text)
    text = _ROLE.sub(r"@role:\1", text)
    text = _USER.sub(r"@user:\1", text)
    return _BOLD.sub(lambda m: _sgr("1", m[1], colour), text)


def _wrap(text: str, columns: int, colour: bool) -> list[str]:
    """Lines of `text`, each wrapped to `columns`; `-# ` subtext lines dimmed."""
    out: list[str] = []
    for raw in text.splitlines() or [""]:
        dim = raw.startswith("-# ")
        line = _inline(raw.removeprefix("-# "), colour)
        wrapped = textwrap.wrap(line, columns, replace_whitespace=False, drop_whitespace=True) or [""]
        out.extend(_sgr("2", part, colour) if dim else part for part in wrapped)
    return out


def _bar_colour(value: Any) -> str:
    if not isinstance(value, int):
        return "90"
    red, green, blue = (value >> 16) & 255, (value >> 8) & 255, value & 255
    return f"38;2;{red};{green};{blue}"


def embed(data: Mapping[str, Any], columns: int, colour: bool = False) -> list[str]:
    """One embed: title (and url), description, fields, footer, framed by a coloured bar."""
    inner = columns - 2
    body: list[str] = []
    if data.get("title"):
        body.append(_sgr("1", _inline(str(data["title"]), colour), colour))
    if data.get("url"):
        body.append(_sgr("2", str(data["url"]), colour))
    if data.get("description"):
        body.extend(_wrap(str(data["description"]), inner, colour))
    previous_short = False
    for index, field in enumerate(data.get("fields") or []):
        name = _inline(str(field.get("name", "")), colour)
        value = str(field.get("value", ""))
        short = "\n" not in value and len(name) + len(value) + 2 <= inner
        if index == 0 or not (short and previous_short):
            body.append("")  # short fields sit together; a long one gets room around it
        previous_short = short
        if short:
            body.append(f"{_sgr('1', name, colour)}: {_inline(value, colour)}")
            continue
        body.append(_sgr("1", name, colour))
        body.extend("  " + line for line in _wrap(value, inner - 2, colour))
    footer = (data.get("footer") or {}).get("text")
    if footer or data.get("timestamp"):
        body.append("")
        parts = [str(p) for p in (footer, data.get("timestamp")) if p]
        body.append(_sgr("2", " · ".join(parts), colour))
    bar = _sgr(_bar_colour(data.get("color")), "┃", colour)
    rule = _sgr(_bar_colour(data.get("color")), "─" * min(columns, 60), colour)
    return [rule, *(f"{bar} {line}" for line in body), rule]


def message(
    data: Mapping[str, Any], *, indent: int = 0, columns: int | None = None, colour: bool | None = None
) -> str:
    """A message object (or a webhook/interaction message body) as terminal text."""
    colour = use_colour() if colour is None else colour
    columns = (columns or width()) - indent
    lines: list[str] = []
    content = data.get("content")
    if content:
        lines.extend(_wrap(str(content), columns, colour))
    for item in data.get("embeds") or []:
        if isinstance(item, Mapping):
            lines.extend(embed(item, columns, colour))
    if not lines:
        lines.append("(empty message)")
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def interaction_response(response: Mapping[str, Any], *, indent: int = 0, colour: bool | None = None) -> str:
    """The immediate answer of the interactions endpoint, described the way Discord would show it."""
    kind = response.get("type")
    colour = use_colour() if colour is None else colour
    if kind == 1:
        return " " * indent + "PONG (type 1): the endpoint is alive and verified the signature"
    if kind == 5:
        note = "AstraBot is thinking… (deferred, type 5)"
        return " " * indent + _sgr("2", note, colour)
    data = response.get("data") or {}
    if kind in (4, 7) and isinstance(data, Mapping):
        who = "only you can see this" if int(data.get("flags") or 0) & EPHEMERAL_FLAG else "visible to all"
        head = " " * indent + _sgr("2", f"AstraBot ({who}):", colour)
        return head + "\n" + message(data, indent=indent, colour=colour)
    return " " * indent + f"response type {kind}: {response}"


def messages(items: Iterable[Mapping[str, Any]], *, indent: int = 0, colour: bool | None = None) -> str:
    return "\n".join(message(item, indent=indent, colour=colour) for item in items)
