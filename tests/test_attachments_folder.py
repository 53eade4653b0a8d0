"""Opening a document's file: only inside the documents folder, whatever links say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.attachments import folder
from core.attachments.folder import FileProblem, FolderMissing, check, open_inside, read_all


def _folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "2026").mkdir(parents=True)
    (docs / "2026" / "a.pdf").write_bytes(b"%PDF mine")
    (tmp_path / "secret.pdf").write_bytes(b"%PDF not yours")
    return docs


def test_a_file_inside_the_folder_is_read(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    with open_inside(str(docs), "2026/a.pdf") as fd:
        assert read_all(fd, 9) == b"%PDF mine"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../secret.pdf", "leaves the documents folder ('..')"),
        ("2026/../../secret.pdf", "leaves the documents folder ('..')"),
        ("/etc/passwd", "is absolute: a file's path is relative to the documents folder"),
        ("2026/missing.pdf", "no such file"),
        ("2026", "is not a regular file"),
    ],
)
def test_a_path_that_cannot_be_attached_says_why(tmp_path: Path, path: str, why: str) -> None:
    docs = _folder(tmp_path)
    with pytest.raises(FileProblem) as raised:
        check(str(docs), path)
    assert raised.value.why == why


def test_a_link_made_after_import_that_points_out_is_never_read(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    (docs / "2026" / "a.pdf").unlink()
    os.symlink(tmp_path / "secret.pdf", docs / "2026" / "a.pdf")
    with pytest.raises(FileProblem) as raised, open_inside(str(docs), "2026/a.pdf"):
        pass
    assert "leads outside the documents folder" in raised.value.why


def test_a_link_swapped_in_between_the_check_and_the_open_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _folder(tmp_path)
    real_resolve = folder.resolve

    def resolve_then_swap(root: str, path: str) -> folder.Resolved:
        resolved = real_resolve(root, path)  # the file is inside now...
        (docs / "2026" / "a.pdf").unlink()  # ...and a link out takes its place
        os.symlink(tmp_path / "secret.pdf", docs / "2026" / "a.pdf")
        return resolved

    monkeypatch.setattr(folder, "resolve", resolve_then_swap)
    with pytest.raises(FileProblem) as raised, open_inside(str(docs), "2026/a.pdf"):
        pass
    assert raised.value.why == "changed into a symbolic link while it was opened: not read"


def test_a_folder_swapped_for_a_link_out_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _folder(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.pdf").write_bytes(b"%PDF not yours")
    real_resolve = folder.resolve

    def resolve_then_swap(root: str, path: str) -> folder.Resolved:
        resolved = real_resolve(root, path)
        os.rename(docs / "2026", docs / "2026-old")
        os.symlink(tmp_path / "other", docs / "2026")
        return resolved

    monkeypatch.setattr(folder, "resolve", resolve_then_swap)
    with pytest.raises(FileProblem), open_inside(str(docs), "2026/a.pdf"):
        pass


def test_a_missing_documents_folder_is_a_fault_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(FolderMissing):
        check(str(tmp_path / "nowhere"), "a.pdf")
