"""Rules 19 and 20: a file the message must attach is missing, or the message too large."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import update

from core.attachments.reckon import encoded_size, reckoned_size
from core.clock import parse_instant
from core.planner.plan import Plan, make_plan
from core.planner.report import plan_json, stream_plan_json
from core.storage import Database
from core.storage.models import SmtpProfile, table_of
from tests.attachment_support import with_files
from tests.planning import DEFAULT_AT, codes, details, only, plan_of
from tests.test_cli import msgrun


def replan(db: Database) -> Plan:
    """The plan again, of what is stored (no import)."""
    return make_plan(db, "inv", parse_instant(DEFAULT_AT), environ={})


def test_a_present_file_includes_the_candidate(db: Database, tmp_path: Path) -> None:
    plan = plan_of(db, with_files(tmp_path))
    assert only(plan).decision == "included"
    assert plan.warnings == [
        "SMTP profile main has never passed an SMTP test (msgrun smtp test main)"
    ]


def test_a_missing_document_file_excludes_the_candidate_naming_the_path(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    (tmp_path / "2026" / "2026-0001.pdf").unlink()
    candidate = only(plan_of(db, document))
    assert codes(candidate) == ["document_file_missing"]
    assert details(candidate)["document_file_missing"] == (
        f"document D1's file 2026/2026-0001.pdf: no such file (documents folder {tmp_path})"
    )


def test_a_missing_file_of_the_definition_excludes_every_candidate(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    document["definitions"][0]["template"]["attachments"] = {"files": ["terms/terms.pdf"]}
    candidate = only(plan_of(db, document))
    assert details(candidate) == {
        "document_file_missing": "the definition's file terms/terms.pdf: no such file "
        f"(documents folder {tmp_path})"
    }


def test_a_folder_in_place_of_the_file_is_not_a_regular_file(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path, {"path": "2026"})
    assert (
        "2026: is not a regular file"
        in details(only(plan_of(db, document)))["document_file_missing"]
    )


def test_a_link_pointing_out_made_after_import_excludes_at_planning(
    db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    document = with_files(folder)
    plan_of(db, document)
    (tmp_path / "secret.pdf").write_bytes(b"%PDF someone else's")
    (folder / "2026" / "2026-0001.pdf").unlink()
    os.symlink(tmp_path / "secret.pdf", folder / "2026" / "2026-0001.pdf")
    candidate = only(replan(db))
    assert "leads outside the documents folder" in details(candidate)["document_file_missing"]


def test_without_document_files_the_missing_file_does_not_matter(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    (tmp_path / "2026" / "2026-0001.pdf").unlink()
    document["definitions"][0]["template"]["attachments"] = {"document_files": False}
    assert only(plan_of(db, document)).decision == "included"


def test_a_document_without_files_is_a_warning_not_a_reason(
    db: Database, minimal: dict[str, object]
) -> None:
    plan = plan_of(db, minimal)
    assert only(plan).decision == "included"
    assert plan.warnings[-1] == (
        "1 candidate(s) of this definition have a document that lists no files: they are sent "
        "without attachments (template.attachments.document_files)"
    )


def test_plan_json_streamed_gives_the_warning_of_a_document_without_files_too(
    db: Database, minimal: dict[str, object]
) -> None:
    plan = plan_of(db, minimal)
    streamed = json.loads("".join(stream_plan_json(db, "inv", plan.at, environ={})))
    assert streamed == plan_json(plan)
    assert any("lists no files" in warning for warning in streamed["warnings"])


def test_the_reckoned_size_is_base64_with_line_breaks_plus_headers() -> None:
    assert encoded_size(0) == 0
    assert encoded_size(57) == 76 + 2  # one full line
    assert encoded_size(58) == 80 + 4  # a second line begins
    assert reckoned_size([57, 3]) == 8192 + (78 + 1024) + (4 + 2 + 1024)


def _limit(db: Database, max_message_bytes: int | None, server_size: int | None) -> None:
    with db.connect() as connection:
        connection.execute(
            update(table_of(SmtpProfile)).values(
                max_message_bytes=max_message_bytes, server_size=server_size
            )
        )
        connection.commit()


def test_a_message_over_the_profiles_limit_is_too_large_with_both_sizes(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    size = (tmp_path / "2026" / "2026-0001.pdf").stat().st_size
    reckoned = reckoned_size([size])
    document["smtp_profiles"][0]["max_message_bytes"] = reckoned - 1
    candidate = only(plan_of(db, document))
    assert codes(candidate) == ["message_too_large"]
    assert details(candidate)["message_too_large"] == (
        f"the message with its 1 attachment ({size:,} bytes of files) is reckoned at "
        f"{reckoned:,} bytes, over the limit of {reckoned - 1:,} bytes "
        "(the profile's max_message_bytes)"
    )


@pytest.mark.parametrize(
    ("max_bytes", "server", "excluded"),
    [(None, None, False), (None, 0, False), (10**9, None, False), (10**9, 9000, True)],
)
def test_the_limit_is_the_smaller_of_the_profiles_and_the_servers_size(
    db: Database, tmp_path: Path, max_bytes: int | None, server: int | None, excluded: bool
) -> None:
    document = with_files(tmp_path)
    plan_of(db, document)
    _limit(db, max_bytes, server)
    candidate = only(replan(db))
    assert (codes(candidate) == ["message_too_large"]) is excluded
    if excluded:
        assert "(the SIZE the server announced)" in details(candidate)["message_too_large"]


def test_rules_19_and_20_come_last_in_the_order_of_the_spec(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path)
    document["documents"][0]["status"] = "concept"
    document["documents"][0]["files"].append({"path": "gone.pdf"})
    document["smtp_profiles"][0]["max_message_bytes"] = 2048
    candidate = only(plan_of(db, document))
    assert codes(candidate) == [
        "document_status_not_targeted",
        "document_file_missing",
        "message_too_large",
    ]


def test_plan_and_why_show_the_reason_with_its_fix_and_the_json_is_stable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    document = with_files(tmp_path / "docs")
    (tmp_path / "docs" / "2026" / "2026-0001.pdf").unlink()
    path = tmp_path / "in.json"
    path.write_text(json.dumps(document))
    assert msgrun(capsys, "import", str(path), "--db", db_url)[0] == 0
    at = ("--at", "2026-11-23T10:00:00+00:00", "--db", db_url)
    code, out, _ = msgrun(capsys, "plan", "inv", *at)
    assert code == 0
    assert "document_file_missing" in out and "Generate the document's PDF" in out
    code, first, _ = msgrun(capsys, "plan", "inv", "--json", *at)
    code, second, _ = msgrun(capsys, "plan", "inv", "--json", *at)
    assert first == second
    assert json.loads(first)["summary"]["by_reason"] == {"document_file_missing": 1}
    code, out, _ = msgrun(capsys, "why", "C1", "--json", *at)
    [definition] = json.loads(out)["definitions"]
    [reason] = definition["candidates"][0]["reasons"]
    assert reason["code"] == "document_file_missing"
    assert reason["fix"] == "Generate the document's PDF, or correct its path."
