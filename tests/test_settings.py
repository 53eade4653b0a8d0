"""Settings from the environment: a value outside what msgrun promises is refused
(exit 2, nothing done), never quietly replaced by another."""

from __future__ import annotations

import pytest

from core.states import LEASE_SECONDS, lease_seconds
from core.storage import Database
from tests.conftest import load_ok, url_of
from tests.db_snapshot import snapshot
from tests.delivery_support import document
from tui import cli


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("", LEASE_SECONDS),
        (" ", LEASE_SECONDS),
        ("1", 1.0),
        ("15", 15.0),
        ("7.5", 7.5),
        (" 4 ", 4.0),
    ],
)
def test_the_lease_is_a_number_of_seconds_from_1_to_15(raw: str, seconds: float) -> None:
    assert lease_seconds({"MSGRUN_LEASE_SECONDS": raw}) == seconds
    assert lease_seconds({}) == LEASE_SECONDS


@pytest.mark.parametrize("raw", ["99", "0", "0.5", "15.1", "-3", "nan", "inf", "twelve"])
def test_a_lease_outside_1_to_15_seconds_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(
        ValueError, match=f"MSGRUN_LEASE_SECONDS='{raw}' is not a number of seconds from 1 to 15"
    ):
        lease_seconds({"MSGRUN_LEASE_SECONDS": raw})


@pytest.mark.parametrize("command", [["run", "start", "inv", "--detach"], ["run", "restart", "1"]])
def test_a_command_that_delivers_refuses_a_lease_of_99_seconds_exit_2(
    db: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    load_ok(db, document(2, 2525))
    before = snapshot(db)
    monkeypatch.setenv("MSGRUN_LEASE_SECONDS", "99")
    code = cli.main([*command, "--db", url_of(db)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "MSGRUN_LEASE_SECONDS='99' is not a number of seconds from 1 to 15" in err
    assert "Traceback" not in err
    assert snapshot(db) == before
