"""Discord message building shared by every reply: splitting long answers, limits, mention safety.

Pure: no I/O. Lengths are counted in Python characters (code points).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

MESSAGE_CONTENT_LIMIT: Final = 2000
EMBEDS_PER_MESSAGE: Final = 10
EMBED_TITLE_LIMIT: Final = 256
EMBED_DESCRIPTION_LIMIT: Final = 4096
EMBED_FIELDS_LIMIT: Final = 25
EMBED_FIELD_NAME_LIMIT: Final = 256
EMBED_FIELD_VALUE_LIMIT: Final = 1024
EMBED_FOOTER_LIMIT: Final = 2048
EMBED_AUTHOR_NAME_LIMIT: Final = 256
EMBED_TOTAL_LIMIT: Final = 6000
EPHEMERAL_FLAG: Final = 64

ELLIPSIS: Final = "…"
EMPTY_ANSWER: Final = "*(the model returned an empty answer)*"
# Discord rejects an embed field whose name or value is empty; a zero-width space renders as nothing.
BLANK_FIELD: Final = "\u200b"
# LLM text is user-influenced: "@everyone" in an answer must never ping the server.
NO_MENTIONS: Final[Mapping[str, list[str]]] = {"parse": []}

# Below this a reopened fence ("```" + a 32-char tag) and its closing could crowd out the text.
MIN_SPLIT_LIMIT: Final = 100
_FENCE = "```"
_CLOSE_FENCE = "\n```"
# A fence is three backticks; an opening one may carry a language tag that ends its line.
_FENCE_TOKEN = re.compile(r"```(?:([\w+#.-]{1,32})(?=\n))?")
_SEPARATORS = ("\n\n", "\n", " ")


def no_mentions() -> dict[str, list[str]]:
    """A fresh `allowed_mentions` that pings nobody (a new dict, safe to mutate)."""
    return {"parse": []}


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when it was cut."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


# --- reply splitting ----------------------------------------------------------------------------
def split_reply(text: str, limit: int = MESSAGE_CONTENT_LIMIT) -> list[str]:
    """Split an answer into messages of at most `limit` characters.

    Cuts at a blank line, else a line break, else a space (each only in the latter half of the
    room, so chunks stay full), else hard. A code block that would be cut is closed at the end of
    its chunk and reopened with its language tag in the next; a block that opens late in a chunk
    moves whole to the next one instead. An unclosed fence at the very end (a truncated answer) is
    closed too. Only whitespace and fence markers are ever dropped or added.
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {MIN_SPLIT_LIMIT}, got {limit}")
    rest = text.replace("\r\n", "\n").strip()
    if not rest:
        return [EMPTY_ANSWER]
    chunks: list[str] = []
    open_lang: str | None = None  # the tag of a fence left open by the previous chunk
    while rest.strip():
        prefix = "" if open_lang is None else f"{_FENCE}{open_lang}\n"
        tokens = list(_FENCE_TOKEN.finditer(rest))
        final_lang, _ = _fence_state(tokens, len(rest), open_lang)
        closing = _CLOSE_FENCE if final_lang is not None else ""
        if len(prefix) + len(rest) + len(closing) <= limit:
            chunks.append(prefix + rest + closing)
            break
        body_end, next_start, open_lang = _cut(rest, tokens, limit - len(prefix), open_lang)
        closing = _CLOSE_FENCE if open_lang is not None else ""
        chunks.append(prefix + rest[:body_end].rstrip() + closing)
        rest = rest[next_start:]
        if open_lang is None:
            rest = rest.lstrip()
            continue
        rest = rest.lstrip("\n")
        bare_close = _FENCE_TOKEN.match(rest)
        if bare_close is not None and bare_close.group(1) is None:
            # The block ended right at the cut: our added fence already closed it.
            rest, open_lang = rest[bare_close.end() :].lstrip(), None
    return chunks


def _fence_state(
    tokens: list[re.Match[str]], end: int, open_lang: str | None
) -> tuple[str | None, int | None]:
    """Fence state after `rest[:end]`: (tag of the open fence or None, where it opened in `rest`)."""
    opened_at: int | None = None
    for token in tokens:
        if token.start() >= end:
            break
        if open_lang is None:
            open_lang, opened_at = token.group(1) or "", token.start()
        else:
            open_lang, opened_at = None, None
    return open_lang, opened_at


def _cut(
    rest: str, tokens: list[re.Match[str]], room: int, open_lang: str | None
) -> tuple[int, int, str | None]:
    """Where to end this chunk's body and start the next: (body end, next start, fence left open)."""
    cut = _cut_within(rest, tokens, room, open_lang)
    if cut[2] is not None and len(rest[: cut[0]].rstrip()) + len(_CLOSE_FENCE) > room:
        # The chunk ends inside a block: leave room for the fence that closes it.
        cut = _cut_within(rest, tokens, room - len(_CLOSE_FENCE), open_lang)
    return cut


def _cut_within(
    rest: str, tokens: list[re.Match[str]], budget: int, open_lang: str | None
) -> tuple[int, int, str | None]:
    body_end, next_start = _boundary(rest, budget)
    for token in tokens:
        if token.start() < body_end < token.end():
            # Never cut through a fence marker or its tag: it would stop being a fence.
            body_end = next_start = token.start()
            break
    lang, opened_at = _fence_state(tokens, body_end, open_lang)
    if lang is not None and opened_at is not None and opened_at >= budget // 3:
        # A block that opens late in this chunk starts the next one whole rather than split.
        return opened_at, opened_at, None
    return body_end, next_start, lang


def _boundary(rest: str, budget: int) -> tuple[int, int]:
    """The preferred cut within `rest[:budget]`: (body end, start of the remainder)."""
    floor = budget // 2
    for separator in _SEPARATORS:
        position = rest.rfind(separator, floor, budget + len(separator))
        if position > 0:
            return position, position + len(separator)
    return budget, budget


# --- messages and embeds ------------------------------------------------------------------------
def safe_message(
    content: str | None = None,
    *,
    embeds: Iterable[Mapping[str, Any]] | None = None,
    ephemeral: bool = False,
    allowed_mentions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A message payload within Discord's limits that pings nobody unless told otherwise."""
    mentions = dict(allowed_mentions) if allowed_mentions is not None else no_mentions()
    message: dict[str, Any] = {"allowed_mentions": mentions}
    if content is not None:
        message["content"] = truncate(content, MESSAGE_CONTENT_LIMIT)
    if embeds is not None:
        message["embeds"] = _fit_embeds(embeds)
    if ephemeral:
        message["flags"] = EPHEMERAL_FLAG
    return message


def embed_size(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts against an embed's 6000 total."""
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    for field in embed.get("fields") or ():
        size += len(field.get("name") or "") + len(field.get("value") or "")
    size += len((embed.get("footer") or {}).get("text") or "")
    size += len((embed.get("author") or {}).get("name") or "")
    return size


def clamp_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `embed` trimmed to Discord's limits per part and in total.

    Past the 6000 total the description is shortened first (it is prose; fields carry the
    figures), then trailing fields are dropped. The input is not changed.
    """
    clamped = dict(embed)
    for key, limit in (("title", EMBED_TITLE_LIMIT), ("description", EMBED_DESCRIPTION_LIMIT)):
        if isinstance(clamped.get(key), str):
            clamped[key] = truncate(clamped[key], limit)
    if clamped.get("fields") is not None:
        clamped["fields"] = [_clamp_field(field) for field in list(clamped["fields"])[:EMBED_FIELDS_LIMIT]]
    for key, text_key, limit in (
        ("footer", "text", EMBED_FOOTER_LIMIT),
        ("author", "name", EMBED_AUTHOR_NAME_LIMIT),
    ):
        part = clamped.get(key)
        if isinstance(part, Mapping) and isinstance(part.get(text_key), str):
            clamped[key] = {**part, text_key: truncate(part[text_key], limit)}
    excess = embed_size(clamped) - EMBED_TOTAL_LIMIT
    description = clamped.get("description")
    if excess > 0 and description:
        shortened = truncate(description, len(description) - excess)
        if shortened:
            clamped["description"] = shortened
        else:
            del clamped["description"]
    while embed_size(clamped) > EMBED_TOTAL_LIMIT and clamped.get("fields"):
        clamped["fields"] = clamped["fields"][:-1]
    return clamped


def _clamp_field(field: Mapping[str, Any]) -> dict[str, Any]:
    name = truncate(str(field.get("name") or ""), EMBED_FIELD_NAME_LIMIT) or BLANK_FIELD
    value = truncate(str(field.get("value") or ""), EMBED_FIELD_VALUE_LIMIT) or BLANK_FIELD
    return {**field, "name": name, "value": value}


def _fit_embeds(embeds: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """At most 10 clamped embeds whose sizes together stay within the per-message 6000."""
    fitted: list[dict[str, Any]] = []
    total = 0
    for embed in embeds:
        clamped = clamp_embed(embed)
        total += embed_size(clamped)
        if len(fitted) == EMBEDS_PER_MESSAGE or total > EMBED_TOTAL_LIMIT:
            break
        fitted.append(clamped)
    return fitted
