"""The import's control-character check (displayed text may hold no control, format,
line or paragraph separator character): its fast path for printable text answers as
the character-by-character rule does, for any text."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from core.interchange.reader import (
    ATTRIBUTE_ALLOWED,
    JOINERS,
    MULTILINE_ALLOWED,
    SEPARATORS,
    control_character,
)


def by_each_character(value: str, multiline: bool, allowed: frozenset[str]) -> str | None:
    """The rule as written: the first character of those categories, but joiners and
    what is allowed."""
    if multiline:
        allowed = allowed | MULTILINE_ALLOWED
    for char in value:
        if char not in JOINERS and char not in allowed and unicodedata.category(char) in SEPARATORS:
            return f"U+{ord(char):04X}"
    return None


# Text of every kind of character, and the kinds the rule is about made likely.
TRICKY = st.sampled_from(["\n", "\r", "\t", "\u200c", "\u200d", "\u202e", "\u2028", "\x7f", " "])
texts = st.lists(st.one_of(st.characters(), TRICKY)).map("".join)


@given(value=texts, multiline=st.booleans(), attribute=st.booleans())
def test_the_fast_path_answers_as_each_character_does(
    value: str, multiline: bool, attribute: bool
) -> None:
    allowed = ATTRIBUTE_ALLOWED if attribute else frozenset()
    assert control_character(value, multiline=multiline, allowed=allowed) == by_each_character(
        value, multiline, allowed
    )


def test_examples() -> None:
    assert control_character("Ana Souza") is None
    assert control_character("Mañana café 東京 😀") is None
    assert control_character("Ana\u202eSouza") == "U+202E"
    assert control_character("a\nb") == "U+000A"
    assert control_character("a\nb", multiline=True) is None
    assert control_character("a\u200db") is None  # a joiner shapes emoji and scripts
