"""msgrun import reads the file's text strictly: a lone surrogate escape (``"\\ud800"``,
half a character) is refused at its path, line and column, and a file that is not
JSON is said with a line and column, whatever its size (over ``WHOLE_READ_LIMIT`` the
file is read again in chunks, not whole)."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import core.interchange as interchange
from core.interchange import import_text, load, position, stream
from core.storage import Database
from core.storage.models import Customer, Organisation
from fixtures.generate import generate_document
from tests.conftest import MINIMAL, load_ok
from tests.db_snapshot import snapshot
from tui import cli

SURROGATE_MESSAGE = (
    "{escape} at line {line}, column {column} is a lone surrogate escape, not a character"
)


def line_and_column(text: str, escape: str) -> dict[str, int]:
    """Where ``escape`` first is in ``text``, as the json module counts."""
    at = text.index(escape)
    return {"line": text.count("\n", 0, at) + 1, "column": at - text.rfind("\n", 0, at)}


def minimal_text(old: str, new: str) -> str:
    """The minimal file, indented, with ``old`` (JSON text) replaced by ``new``."""
    text = json.dumps(MINIMAL, indent=1)
    assert old in text
    return text.replace(old, new, 1)


def refused(db: Database, text: str | bytes) -> list[str]:
    before = snapshot(db)
    outcome = import_text(db, text)
    assert not outcome.ok
    assert snapshot(db) == before, "a refused import must write nothing"
    return [str(problem) for problem in outcome.problems]


# -- lone surrogate escapes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "escape"),
    [
        # A lone low half: yajl gave bytes that are not UTF-8 (an internal error).
        (
            '"ana@example.org"',
            r'"a\udc80b@x.org"',
            "customers[0].contacts[0].addresses[0].address",
            r"\udc80",
        ),
        # A lone high half: yajl read it as "?" (stored as "O?").
        ('"Test Pools"', r'"O\ud800"', "organisation.name", r"\ud800"),
        ('"C1"', r'"C\ud83d"', "customers[0].id", r"\ud83d"),
        # A high half before an escape that is no low half: yajl made U+10041 of it.
        ('"Test Pools"', r'"O\ud800\u0041"', "organisation.name", r"\ud800"),
        ('"Test Pools"', r'"O\udc00\ud800"', "organisation.name", r"\udc00"),
        # An escaped backslash, then text that looks like a high half: the low half
        # after it is alone.
        ('"Test Pools"', r'"O\\ud83d\ude00"', "organisation.name", r"\ude00"),
        ('"Test Pools"', r'"O\\\uDBFF"', "organisation.name", r"\uDBFF"),
        ('"billing"', r'"bil\uDFFFling"', "customers[0].contacts[0].addresses[0].key", r"\uDFFF"),
        ("2525", r'"\ud800"', "smtp_profiles[0].port", r"\ud800"),  # said before its type
    ],
)
def test_a_lone_surrogate_escape_is_refused_at_its_path_line_and_column(
    db: Database, old: str, new: str, path: str, escape: str
) -> None:
    load_ok(db, MINIMAL)
    text = minimal_text(old, new)
    message = SURROGATE_MESSAGE.format(escape=escape, **line_and_column(text, escape))
    assert refused(db, text) == [f"{path}: {message}"]


def test_a_lone_surrogate_escape_in_a_key_is_refused_at_its_object(db: Database) -> None:
    text = minimal_text('"allow_email"', r'"allow\ud800_email"')
    message = SURROGATE_MESSAGE.format(escape=r"\ud800", **line_and_column(text, r"\ud800"))
    assert refused(db, text) == [f"customers[0].contacts[0]: in a key, {message}"]
    text = minimal_text('"format"', r'"form\udfffat"')
    message = SURROGATE_MESSAGE.format(escape=r"\udfff", **line_and_column(text, r"\udfff"))
    assert refused(db, text) == [f"in a key, {message}"]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "BATCH", 2)


@pytest.mark.usefixtures("small_batches")
def test_a_lone_surrogate_escape_after_batches_were_written_leaves_nothing_written(
    db: Database,
) -> None:
    document = generate_document(9, 3)
    document["customers"][-1]["name"] = "Ana \ud800"  # json.dumps writes "Ana \ud800"
    text = json.dumps(document)
    assert r"Ana \ud800" in text
    message = SURROGATE_MESSAGE.format(escape=r"\ud800", **line_and_column(text, r"\ud800"))
    assert refused(db, text) == [f"customers[8].name: {message}"]


def test_a_surrogate_pair_and_an_escaped_backslash_import_as_before(db: Database) -> None:
    text = minimal_text('"Test Pools"', r'"Pools \ud83d\ude00 \uDBFF\uDFFF"')
    # A backslash, then text: "\\ud800" is the six characters \ud800, not an escape.
    text = text.replace('"name": "Ana"', r'"name": "Ana \\ud800 \\\\\uD83D\uDE00"', 1)
    outcome = import_text(db, text)
    assert outcome.ok, [str(p) for p in outcome.problems]
    with db.session() as session:
        assert session.get(Organisation, 1).name == "Pools \U0001f600 \U0010ffff"  # type: ignore[union-attr]
        assert session.scalars(select(Customer.name)).all() == ["Ana \\ud800 \\\\\U0001f600"]


def test_a_lone_surrogate_escape_in_a_file_that_is_no_object_is_said_without_a_path(
    db: Database,
) -> None:
    assert refused(db, '[1,\n "\\ud800"]') == [
        SURROGATE_MESSAGE.format(escape=r"\ud800", line=2, column=3)
    ]
    # A string where no string may be: a syntax error, said as such.
    assert refused(db, '{"format" "\\ud800"}') == [
        "not JSON: Expecting ':' delimiter at line 1, column 11"
    ]


def test_the_command_refuses_a_lone_surrogate_and_leaves_no_new_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "in.json"
    path.write_text(minimal_text('"ana@example.org"', r'"a\udc80b@x.org"'))
    target = tmp_path / "new.db"
    code = cli.main(["import", str(path), "--db", f"sqlite:///{target}"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "1 problem; nothing was imported" in err
    assert r"customers[0].contacts[0].addresses[0].address: \udc80 at line " in err
    assert "internal error" not in err and "Traceback" not in err
    assert not target.exists()


# A string's text: plain and other characters, escapes of every kind, and the
# surrogate escapes (paired, lone, and written as text after an escaped backslash).
PIECES = st.sampled_from(
    [
        "a",
        "é",
        "東",
        "\U0001f600",
        r"\\",
        r"\"",
        r"\n",
        r"\u0041",
        r"\u00e9",
        r"\ud83d\ude00",
        r"\uDBFF\uDFFF",
        r"\ud800",
        r"\uDC00",
        r"\\ud800",
        r"\\\ud800",
        r"\ud800\u0041",
    ]
)


@st.composite
def json_strings(draw: st.DrawFn) -> str:
    return '"' + "".join(draw(st.lists(PIECES, max_size=8))) + '"'


def _values(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(json_strings(), children), max_size=4).map(
            lambda pairs: "{" + ",\n".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    )


json_values = st.recursive(
    st.one_of(json_strings(), st.just("1"), st.just("null")), _values, max_leaves=12
)


def first_lone_escape(text: str) -> int | None:
    """The byte offset of the first lone surrogate escape, read a character at a time."""
    in_string, at = False, 0
    while at < len(text):
        char = text[at]
        if not in_string:
            in_string = char == '"'
        elif char == '"':
            in_string = False
        elif char == "\\":
            if text[at + 1] == "u":
                code = int(text[at + 2 : at + 6], 16)
                if 0xDC00 <= code <= 0xDFFF:
                    return len(text[:at].encode())
                if 0xD800 <= code <= 0xDBFF:
                    after = text[at + 6 : at + 12]
                    if not (after[:2] == "\\u" and 0xDC00 <= int(after[2:6], 16) <= 0xDFFF):
                        return len(text[:at].encode())
                    at += 6
                at += 6
                continue
            at += 1
        at += 1
    return None


class _Pairs(list[tuple[str, Any]]):
    """An object as json read it: its pairs in file order."""


def first_surrogate_path(value: Any, path: str = "") -> tuple[str, bool] | None:
    """The path of the first string (in file order) that json read a lone surrogate
    into, and whether it is a key."""

    def lone(text: str) -> bool:
        return any(0xD800 <= ord(char) <= 0xDFFF for char in text)

    if isinstance(value, _Pairs):
        for key, item in value:
            if lone(key):
                return path, True
            if (found := first_surrogate_path(item, f"{path}.{key}" if path else key)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := first_surrogate_path(item, f"{path}[{index}]")) is not None:
                return found
    elif isinstance(value, str) and lone(value):
        return path, False
    return None


@settings(max_examples=300, deadline=None)
@given(value=_values(json_values), buffer=st.integers(min_value=1, max_value=40))
def test_the_first_lone_surrogate_escape_is_found_wherever_reads_end(
    value: str, buffer: int
) -> None:
    """Read in buffers of a few bytes, so that escapes and runs of backslashes are
    split between reads: the escape found is the first lone one, at its path."""
    text = f'{{"format": {value}}}' if value.startswith("[") else value
    content = text.encode()
    expected = first_lone_escape(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream, "BUFFER", buffer)
        file = io.BytesIO(content)
        try:
            for _ in stream.iter_file(file):
                pass
        except stream.LoneSurrogate as error:
            assert error.offset == expected
            problem = position.surrogate_problem(file, error)
        else:
            assert expected is None
            return
    read = json.loads(text, object_pairs_hook=_Pairs)
    found = first_surrogate_path(read)
    assert found is not None and problem is not None
    path, in_key = found
    assert problem.path == path
    assert problem.message.startswith("in a key, ") == in_key


# -- not JSON: line and column --------------------------------------------------------


@pytest.fixture
def whole_read_limit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Files read whole for json's words, or (a limit of 0) read again in chunks."""
    if request.param == "chunks":
        monkeypatch.setattr(interchange, "WHOLE_READ_LIMIT", 0)
    return str(request.param)


@pytest.mark.parametrize("whole_read_limit", ["whole", "chunks"], indirect=True)
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_said_where_they_are(
    sqlite_db: Database, whole_read_limit: str, token: str
) -> None:
    text = minimal_text('"Ana",', f'"Ana", "attributes": {{"n": {token}, "s": "NaN"}},')
    where = line_and_column(text, f": {token},")
    where["column"] += 2
    assert refused(sqlite_db, text) == [
        f"not JSON: {token} is not a JSON value at line {where['line']}, column {where['column']}"
    ]


@pytest.mark.parametrize("whole_read_limit", ["whole", "chunks"], indirect=True)
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b" \n\t ", "the file is empty"),
        (b'{"format": "msgrun/1"', "not JSON: * at line 1, column 22"),
        (b'{"a": "\xc0\x80"}', "not UTF-8 text: byte 7 cannot be decoded"),  # overlong
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8 text: byte 7 cannot be decoded"),  # a surrogate
        (b'\xef\xbb\xbf{"a": "\xff"}', "not UTF-8 text: byte 7 cannot be decoded"),
        (b'\xef\xbb\xbf{"a":\n 1.}', "not JSON: * at line 2, column 3"),
        (b'{"a": "\\u12x4"}', "not JSON: * at line 1, column 9"),  # at its u, as json says
    ],
)
def test_what_is_not_json_or_not_utf8_is_said_where_it_is(
    sqlite_db: Database, whole_read_limit: str, content: bytes, expected: str
) -> None:
    [problem] = refused(sqlite_db, content)
    prefix, _, suffix = expected.partition("*")
    assert problem.startswith(prefix) and problem.endswith(suffix), problem
    assert "internal error" not in problem


def outside_strings(text: str) -> list[int]:
    """The places in ``text`` that are not inside a string (its end included)."""
    places, in_string, escaped = [], False, False
    for at, char in enumerate(text):
        if not in_string:
            places.append(at)
            in_string = char == '"'
        elif escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            in_string = False
    return [*places, len(text)]


GENERATED = generate_document(2, 7)
for _customer in GENERATED["customers"]:
    _customer["name"] = f"Zoë Ångström 東京 \U0001f600 {_customer['name']}"
GENERATED_TEXT = json.dumps(GENERATED, indent=1, ensure_ascii=False)
GENERATED_PLACES = outside_strings(GENERATED_TEXT)


@settings(max_examples=150, deadline=None)
@given(
    place=st.sampled_from(GENERATED_PLACES),
    stray=st.sampled_from([*"#}]:,x[{0tn-.e", " 1", "tru", "nul"]),
    crlf=st.booleans(),
    buffer=st.sampled_from([1, 7, 64, 4096]),
)
def test_a_syntax_error_anywhere_in_a_large_file_is_said_where_json_says_it(
    place: int, stray: str, crlf: bool, buffer: int
) -> None:
    """A stray token put anywhere outside a string: a file read in chunks (as over
    WHOLE_READ_LIMIT) names the line and column Python's json module names."""
    text = GENERATED_TEXT[:place] + stray + GENERATED_TEXT[place:]
    if crlf:
        text = text.replace("\n", "\r\n")
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        where = f"at line {error.lineno}, column {error.colno}"
    else:
        return  # still JSON, or NaN where json takes it
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interchange, "WHOLE_READ_LIMIT", 0)
        patch.setattr(position, "BUFFER", buffer)
        [problem] = interchange.syntax_problems(io.BytesIO(text.encode()), "")
    assert str(problem).startswith("not JSON: ") and str(problem).endswith(where), (
        str(problem),
        where,
    )


def test_a_large_file_that_is_not_json_is_read_again_in_flat_memory(tmp_path: Path) -> None:
    """Over WHOLE_READ_LIMIT the error is found reading the file in chunks: memory does
    not grow with the file."""
    record = b'{"id": "C1", "name": "Ana \xc3\xa9", "n": [1, 2.5, true, null]},\n'
    count = 400_000
    path = tmp_path / "big.json"
    with path.open("wb") as file:
        file.write(b'{"format": "msgrun/1", "customers": [\n')
        file.write(record * count)
        file.write(b'{"id": "C2", "n": NaN}]}\n')
    assert path.stat().st_size > 20 * 2**20
    with path.open("rb") as file, pytest.MonkeyPatch.context() as patch:
        patch.setattr(interchange, "WHOLE_READ_LIMIT", 2**20)
        tracemalloc.start()
        try:
            problems = interchange.syntax_problems(file, "")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert [str(p) for p in problems] == [
        f"not JSON: NaN is not a JSON value at line {count + 2}, column 19"
    ]
    assert peak < 4 * 2**20, peak
