"""Importing documents' files: the folder, each document's files, a definition's
attachments, a profile's size limit; no path may leave the folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.interchange import import_text
from core.storage import Database
from core.storage.models import Definition, Document, Organisation, SmtpProfile, table_of
from tests.attachment_support import with_files
from tests.conftest import load_ok
from tests.test_import import problems_of


def test_a_documents_files_are_stored_with_their_name_and_type(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    document["documents"][0]["files"].append(
        {"path": "2026/2026-0001-timesheet.pdf", "name": "Timesheet.pdf"}
    )
    document["documents"][0]["files"].append({"path": "2026/notes.bin"})
    document["definitions"][0]["template"]["attachments"] = {"files": ["terms/terms.pdf"]}
    document["smtp_profiles"][0]["max_message_bytes"] = 10_000_000
    load_ok(db, document)
    with db.connect() as connection:
        files = connection.execute(select(table_of(Document).c.files)).scalar_one()
        folder = connection.execute(select(table_of(Organisation).c.documents_folder)).scalar()
        definition = connection.execute(select(table_of(Definition))).one()
        limit = connection.execute(select(table_of(SmtpProfile).c.max_message_bytes)).scalar()
    assert folder == str(tmp_path)
    assert files == [
        {"path": "2026/2026-0001.pdf", "name": "2026-0001.pdf", "content_type": "application/pdf"},
        {
            "path": "2026/2026-0001-timesheet.pdf",
            "name": "Timesheet.pdf",
            "content_type": "application/pdf",
        },
        {"path": "2026/notes.bin", "name": "notes.bin", "content_type": "application/octet-stream"},
    ]
    assert definition.attach_document_files is True  # an invoice attaches them by default
    assert definition.attachment_files == ["terms/terms.pdf"]
    assert limit == 10_000_000


def test_a_broadcast_attaches_no_document_files_and_may_not_ask_to(
    db: Database, tmp_path: Path, minimal: dict[str, Any]
) -> None:
    minimal["definitions"][0]["kind"] = "broadcast"
    # A broadcast's template may not use `document` either (that is said on its own).
    minimal["definitions"][0]["template"]["subject"] = "News"
    minimal["definitions"][0]["template"]["attachments"] = {"document_files": True}
    assert problems_of(db, minimal) == [
        "definitions[0].template.attachments.document_files: a definition of kind broadcast "
        "has no document whose files to attach"
    ]


def test_a_file_listed_without_a_documents_folder_is_refused(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path)
    del document["organisation"]["documents_folder"]
    [problem] = problems_of(db, document)
    assert problem.startswith("organisation.documents_folder: required when a file is listed")
    assert "documents[0].files[0].path" in problem


def test_a_path_with_dot_dot_is_refused_with_its_json_path(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path / "docs", {"path": "../secret.pdf"})
    assert problems_of(db, document) == [
        "documents[0].files[0].path: '../secret.pdf' leaves the documents folder ('..')"
    ]


def test_an_absolute_path_is_refused_even_inside_the_folder(db: Database, tmp_path: Path) -> None:
    inside = tmp_path / "2026" / "2026-0001.pdf"
    document = with_files(tmp_path, {"path": str(inside)})
    [problem] = problems_of(db, document)
    assert problem.startswith("documents[0].files[0].path:")
    assert "is absolute" in problem


def test_a_symbolic_link_pointing_out_of_the_folder_is_refused(
    db: Database, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4 not yours")
    folder = tmp_path / "docs"
    document = with_files(folder, {"path": "2026/link.pdf"})
    os.symlink(outside, folder / "2026" / "link.pdf")
    assert problems_of(db, document) == [
        "documents[0].files[0].path: '2026/link.pdf' leads outside the documents folder "
        "(a symbolic link points out)"
    ]


def test_a_linked_folder_pointing_out_is_refused_for_a_definitions_file(
    db: Database, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    folder = tmp_path / "docs"
    document = with_files(folder)
    os.symlink(tmp_path / "elsewhere", folder / "terms")
    document["definitions"][0]["template"]["attachments"] = {"files": ["terms/terms.pdf"]}
    assert problems_of(db, document) == [
        "definitions[0].template.attachments.files[0]: 'terms/terms.pdf' leads outside the "
        "documents folder (a symbolic link points out)"
    ]


def test_a_link_that_stays_inside_the_folder_is_taken(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path, {"path": "latest.pdf"})
    os.symlink(tmp_path / "2026" / "2026-0001.pdf", tmp_path / "latest.pdf")
    load_ok(db, document)


def test_a_file_name_with_a_slash_or_a_bidi_override_is_refused(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path, {"path": "2026/2026-0001.pdf", "name": "a/b.pdf"})
    document["documents"][0]["files"].append(
        {"path": "2026/2026-0001.pdf", "name": "invoice\u202efdp.exe"}
    )
    assert problems_of(db, document) == [
        "documents[0].files[0].name: 'a/b.pdf': a file name may not hold '/' or '\\'",
        "documents[0].files[1].name: control character U+202E not allowed",
    ]


def test_a_relative_documents_folder_is_taken_from_the_imported_files_folder(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path / "out")
    document["organisation"]["documents_folder"] = "out"
    outcome = import_text(db, json.dumps(document), base=str(tmp_path))
    assert outcome.ok, outcome.problems
    with db.connect() as connection:
        folder = connection.execute(select(table_of(Organisation).c.documents_folder)).scalar()
    assert folder == str(tmp_path / "out")


def test_a_size_limit_must_be_a_whole_number(db: Database, tmp_path: Path) -> None:
    document = with_files(tmp_path)
    document["smtp_profiles"][0]["max_message_bytes"] = "10 MB"
    assert problems_of(db, document) == [
        "smtp_profiles[0].max_message_bytes: expected a whole number, got a string"
    ]


def organisation_last(document: dict[str, Any]) -> dict[str, Any]:
    """The same file with the organisation written after every record."""
    reordered = {key: value for key, value in document.items() if key != "organisation"}
    reordered["organisation"] = document["organisation"]
    return reordered


def test_a_documents_file_read_before_the_organisation_is_checked_against_its_folder(
    db: Database, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4 not yours")
    folder = tmp_path / "docs"
    document = with_files(folder, {"path": "2026/link.pdf"})
    os.symlink(outside, folder / "2026" / "link.pdf")
    os.symlink(tmp_path, folder / "terms")
    document["definitions"][0]["template"]["attachments"] = {"files": ["terms/outside.pdf"]}
    assert problems_of(db, organisation_last(document)) == [
        "documents[0].files[0].path: '2026/link.pdf' leads outside the documents folder "
        "(a symbolic link points out)",
        "definitions[0].template.attachments.files[0]: 'terms/outside.pdf' leads outside the "
        "documents folder (a symbolic link points out)",
    ]


def test_a_file_listed_before_an_organisation_without_a_folder_is_refused_once(
    db: Database, tmp_path: Path
) -> None:
    document = with_files(tmp_path)
    del document["organisation"]["documents_folder"]
    document["definitions"][0]["template"]["attachments"] = {"files": ["terms/terms.pdf"]}
    [problem] = problems_of(db, organisation_last(document))
    assert problem.startswith("organisation.documents_folder: required when a file is listed")
    assert "(the first at documents[0].files[0].path)" in problem


def test_msgrun_import_takes_a_relative_documents_folder_from_the_files_folder_not_the_current(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import url_of
    from tui import cli

    (tmp_path / "elsewhere").mkdir()
    document = with_files(tmp_path / "export" / "out")
    document["organisation"]["documents_folder"] = "out"
    path = tmp_path / "export" / "in.json"
    path.write_text(json.dumps(document))
    monkeypatch.chdir(tmp_path / "elsewhere")
    code = cli.main(["import", os.path.join("..", "export", "in.json"), "--db", url_of(db)])
    _, err = capsys.readouterr()
    assert (code, err) == (0, "")
    with db.connect() as connection:
        folder = connection.execute(select(table_of(Organisation).c.documents_folder)).scalar()
    assert folder == str(tmp_path / "export" / "out")
