"""Reply splitting, mention safety and embed limits (astrabot.domain.messages)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astrabot.domain.messages import (
    ELLIPSIS,
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FIELDS_LIMIT,
    EMBED_TOTAL_LIMIT,
    EMBEDS_PER_MESSAGE,
    EMPTY_ANSWER,
    EPHEMERAL_FLAG,
    MESSAGE_CONTENT_LIMIT,
    NO_MENTIONS,
    clamp_embed,
    embed_size,
    safe_message,
    split_reply,
    truncate,
)

TAGS = ("", "python", "js", "c++")


def content_of(text: str) -> str:
    """Text without fence markers (with their tags) and without whitespace."""
    return re.sub(r"\s", "", re.sub(r"```[\w+#.-]*", "", text))


def is_subsequence(needle: str, haystack: str) -> bool:
    remaining = iter(haystack)
    return all(char in remaining for char in needle)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789@.,!", min_size=1, max_size=160)
prose = st.lists(words, min_size=1, max_size=60).map(" ".join)
code_line = st.text(alphabet="abcdxyz0123456789 =()+-:#", max_size=120)
code_block = st.builds(
    lambda tag, lines: f"```{tag}\n" + "\n".join(lines) + "\n```",
    st.sampled_from(TAGS),
    st.lists(code_line, min_size=1, max_size=60),
)
markdown = st.lists(st.one_of(prose, code_block), min_size=1, max_size=12).map("\n\n".join)
limits = st.integers(min_value=100, max_value=MESSAGE_CONTENT_LIMIT)
raw_text = st.text(alphabet="ab `\n#", max_size=4000)


# --- split_reply: properties --------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(text=markdown, limit=limits)
def test_given_markdown_when_split_then_every_chunk_fits_the_limit(text: str, limit: int) -> None:
    assert all(len(chunk) <= limit for chunk in split_reply(text, limit))


@settings(max_examples=300, deadline=None)
@given(text=markdown, limit=limits)
def test_given_markdown_when_split_then_every_chunk_has_balanced_fences(text: str, limit: int) -> None:
    assert all(chunk.count("```") % 2 == 0 for chunk in split_reply(text, limit))


@settings(max_examples=300, deadline=None)
@given(text=markdown, limit=limits)
def test_given_markdown_when_split_then_joined_chunks_keep_all_content(text: str, limit: int) -> None:
    chunks = split_reply(text, limit)
    assert content_of("\n".join(chunks)) == content_of(text)


@settings(max_examples=300, deadline=None)
@given(text=raw_text, limit=limits)
def test_given_arbitrary_text_when_split_then_chunks_fit_and_fences_balance(text: str, limit: int) -> None:
    chunks = split_reply(text, limit)
    assert all(len(chunk) <= limit and chunk.count("```") % 2 == 0 for chunk in chunks)


@settings(max_examples=300, deadline=None)
@given(text=raw_text, limit=limits)
def test_given_arbitrary_text_when_split_then_no_visible_character_is_lost(text: str, limit: int) -> None:
    # Reopened fences repeat a tag, so the original must be a subsequence rather than equal.
    joined = re.sub(r"[\s`]", "", "\n".join(split_reply(text, limit)))
    assert is_subsequence(re.sub(r"[\s`]", "", text), joined)


@settings(max_examples=200, deadline=None)
@given(text=markdown, limit=limits)
def test_given_markdown_when_split_then_no_chunk_is_blank(text: str, limit: int) -> None:
    assert all(chunk.strip() for chunk in split_reply(text, limit))


# --- split_reply: examples ----------------------------------------------------------------------
def five_thousand_char_answer() -> tuple[str, list[str]]:
    intro = " ".join(f"intro{i}" for i in range(200))
    code_lines = [f"    total_{i} = compute({i})  # step {i}" for i in range(75)]
    outro = " ".join(f"outro{i}" for i in range(120))
    text = f"{intro}\n\n```python\n" + "\n".join(code_lines) + f"\n```\n\n{outro}"
    return text, code_lines


def test_given_5000_char_answer_with_python_block_when_split_then_block_is_closed_and_reopened() -> None:
    text, _ = five_thousand_char_answer()
    assert 4500 <= len(text) <= 5500

    chunks = split_reply(text)

    reopened = [
        i
        for i in range(1, len(chunks))
        if chunks[i].startswith("```python\n    total_") and chunks[i - 1].endswith("\n```")
    ]
    assert len(reopened) == 1, chunks
    assert "compute(" in chunks[reopened[0] - 1]


def test_given_5000_char_answer_when_split_then_code_lines_stay_whole_and_in_order() -> None:
    text, code_lines = five_thousand_char_answer()

    chunks = split_reply(text)

    lines = [line for chunk in chunks for line in chunk.split("\n")]
    assert [line for line in lines if "compute(" in line] == code_lines
    assert all(len(chunk) <= MESSAGE_CONTENT_LIMIT for chunk in chunks)


def test_given_short_answer_when_split_then_it_is_one_unchanged_chunk() -> None:
    assert split_reply("Hello **world**.\n\n```py\nprint(1)\n```") == [
        "Hello **world**.\n\n```py\nprint(1)\n```"
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_given_empty_answer_when_split_then_one_placeholder_chunk(text: str) -> None:
    assert split_reply(text) == [EMPTY_ANSWER]


def test_given_paragraphs_when_split_then_cuts_fall_on_blank_lines() -> None:
    paragraphs = [(f"p{i} " * 30).strip() for i in range(10)]

    chunks = split_reply("\n\n".join(paragraphs), 400)

    assert len(chunks) > 1
    assert all(part in paragraphs for chunk in chunks for part in chunk.split("\n\n"))


def test_given_one_long_word_when_split_then_it_is_hard_cut_without_loss() -> None:
    chunks = split_reply("x" * 450, 200)

    assert [len(chunk) for chunk in chunks] == [200, 200, 50]


def test_given_truncated_answer_with_open_fence_when_split_then_the_fence_is_closed() -> None:
    assert split_reply("Here:\n```js\nconst a = 1;") == ["Here:\n```js\nconst a = 1;\n```"]


def test_given_block_opening_late_in_a_chunk_when_split_then_block_moves_whole_to_next_chunk() -> None:
    text = "intro " * 30 + "\n```python\nprint('hello')\nprint('world')\n```"

    chunks = split_reply(text, 200)

    assert chunks[1] == "```python\nprint('hello')\nprint('world')\n```"


def test_given_limit_too_small_for_fences_when_split_then_value_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_reply("text", 20)


# --- safe_message -------------------------------------------------------------------------------
def test_given_everyone_ping_in_text_when_building_message_then_mentions_are_disabled() -> None:
    message = safe_message("@everyone look at this")

    assert message == {"content": "@everyone look at this", "allowed_mentions": {"parse": []}}


def test_given_ephemeral_when_building_message_then_flag_64_is_set() -> None:
    assert safe_message("only you", ephemeral=True)["flags"] == EPHEMERAL_FLAG == 64


def test_given_explicit_allowed_mentions_when_building_message_then_they_are_kept() -> None:
    assert safe_message("hi", allowed_mentions={"users": ["1"]})["allowed_mentions"] == {"users": ["1"]}


def test_given_built_message_when_it_is_mutated_then_no_mentions_default_is_untouched() -> None:
    safe_message("a")["allowed_mentions"]["parse"].append("everyone")

    assert NO_MENTIONS == {"parse": []}
    assert safe_message("b")["allowed_mentions"] == {"parse": []}


def test_given_content_over_2000_when_building_message_then_it_is_truncated_with_ellipsis() -> None:
    content = safe_message("y" * 2500)["content"]

    assert len(content) == MESSAGE_CONTENT_LIMIT
    assert content.endswith(ELLIPSIS)


def test_given_eleven_embeds_when_building_message_then_ten_are_kept() -> None:
    message = safe_message(embeds=[{"title": str(i)} for i in range(11)])

    assert [embed["title"] for embed in message["embeds"]] == [str(i) for i in range(EMBEDS_PER_MESSAGE)]


def test_given_embeds_over_6000_together_when_building_message_then_later_ones_are_dropped() -> None:
    message = safe_message(embeds=[{"description": "d" * 4000}, {"description": "e" * 4000}])

    assert [embed["description"][0] for embed in message["embeds"]] == ["d"]


# --- truncate and embeds ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("short", 10, "short"), ("exactly10!", 10, "exactly10!"), ("hello world", 6, "hello…"), ("abc", 0, "")],
)
def test_given_text_and_limit_when_truncating_then_result_fits_and_marks_the_cut(
    text: str, limit: int, expected: str
) -> None:
    assert truncate(text, limit) == expected


def test_given_embed_with_30_fields_when_clamped_then_25_remain() -> None:
    embed = {"fields": [{"name": f"n{i}", "value": "v"} for i in range(30)]}

    assert len(clamp_embed(embed)["fields"]) == EMBED_FIELDS_LIMIT


def test_given_oversized_parts_when_clamped_then_each_part_is_within_its_limit() -> None:
    embed = {
        "title": "t" * 300,
        "description": "d" * 5000,
        "fields": [{"name": "n", "value": "v" * 2000}],
        "footer": {"text": "f" * 3000, "icon_url": "https://example.invalid/i.png"},
    }

    clamped = clamp_embed(embed)

    assert len(clamped["title"]) == 256
    assert len(clamped["description"]) <= EMBED_DESCRIPTION_LIMIT
    assert len(clamped["fields"][0]["value"]) == EMBED_FIELD_VALUE_LIMIT
    assert len(clamped["footer"]["text"]) == 2048
    assert clamped["footer"]["icon_url"] == "https://example.invalid/i.png"


def test_given_embed_over_6000_in_total_when_clamped_then_total_fits_and_fields_survive() -> None:
    embed = {"description": "d" * 4096, "fields": [{"name": "Balance", "value": "x" * 1024}] * 3}

    clamped = clamp_embed(embed)

    assert embed_size(clamped) <= EMBED_TOTAL_LIMIT
    assert len(clamped["fields"]) == 3


def test_given_fields_alone_over_6000_when_clamped_then_trailing_fields_are_dropped() -> None:
    embed = {"fields": [{"name": "n" * 256, "value": "v" * 1024} for _ in range(25)]}

    clamped = clamp_embed(embed)

    assert embed_size(clamped) <= EMBED_TOTAL_LIMIT
    assert len(clamped["fields"]) == EMBED_TOTAL_LIMIT // (256 + 1024)


def test_given_empty_field_name_when_clamped_then_it_becomes_a_zero_width_space() -> None:
    assert clamp_embed({"fields": [{"name": "", "value": "v"}]})["fields"][0]["name"] == "\u200b"


def test_given_embed_when_clamped_then_the_input_is_not_changed() -> None:
    embed = {"title": "t" * 300, "fields": [{"name": "n", "value": "v" * 2000}]}

    clamp_embed(embed)

    assert len(embed["title"]) == 300
    assert len(embed["fields"][0]["value"]) == 2000
