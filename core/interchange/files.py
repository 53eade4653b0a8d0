"""The documents' files in an interchange file (``attachments.md``).

``document_files`` and ``template_attachments`` read the fields; as the file
is read (``load.py``: a batch at a time once the organisation's folder is known,
those listed before it then), ``check_folder`` makes sure a folder is given when
a file is listed and that no path leaves it (``..``, absolute, or a link that
points out), each problem at its JSON path.
"""

from __future__ import annotations

import os
from typing import Any

from core.attachments.folder import leaves_folder, path_problem
from core.attachments.specs import DOCUMENT_FILES_BY_DEFAULT, default_name, default_type
from core.interchange.reader import MISSING, Problem, Reader, control_character, join
from core.vocabulary import DOCUMENT_KIND_OF

MAX_PATH = 1000


def anchor_folder(document: Any, base: str) -> None:
    """A relative ``documents_folder`` made absolute against ``base`` (the imported
    file's folder, or the current one), in place, before the file is read."""
    organisation = document.get("organisation") if isinstance(document, dict) else None
    if not isinstance(organisation, dict):
        return
    folder = organisation.get("documents_folder")
    if (
        isinstance(folder, str)
        and folder.strip()
        and not os.path.isabs(folder)
        and control_character(folder) is None
        and "\x00" not in folder
    ):
        organisation["documents_folder"] = os.path.normpath(os.path.join(base, folder))


def documents_folder(r: Reader) -> str | None:
    folder = r.text("documents_folder", max_length=4000)
    if folder is not None and not os.path.isabs(folder):
        r.problem("documents_folder", f"{folder!r} is not an absolute path")
        return None
    return folder


def _path(r: Reader, key: str | int, value: Any) -> str | None:
    if not isinstance(value, str):
        r.problem(key, f"expected a path (a string), got {type(value).__name__}")
        return None
    if (char := control_character(value)) is not None:
        r.problem(key, f"control character {char} not allowed")
        return None
    if len(value) > MAX_PATH:
        r.problem(key, f"longer than {MAX_PATH} characters")
        return None
    if (problem := path_problem(value)) is not None:
        r.problem(key, f"{value!r} {problem}")
        return None
    return value


def _name(r: Reader) -> str | None:
    name = r.text("name", max_length=255)
    if name is None:
        return None
    if "/" in name or "\\" in name:
        r.problem("name", f"{name!r}: a file name may not hold '/' or '\\'")
        return None
    if not name.strip() or name in (".", ".."):
        r.problem("name", f"{name!r} is not a file name")
        return None
    return name


def document_files(r: Reader) -> list[dict[str, str]] | None:
    """A document's ``files``: [{"path", "name", "content_type"}], defaults filled in."""
    files: list[dict[str, str]] = []
    items = r.items("files")
    for path, value in items:
        item = Reader(r.problems, path, value)
        if not item.ok:
            continue
        raw = item.raw("path", required=True)
        file_path = None if raw is MISSING else _path(item, "path", raw)
        name = _name(item)
        content_type = item.text("content_type", max_length=255)
        if content_type is not None and (
            "/" not in content_type or any(c.isspace() or c in ';"' for c in content_type)
        ):
            item.problem("content_type", f"{content_type!r} is not a type such as application/pdf")
            content_type = None
        item.finish()
        if file_path is not None:
            shown = name or default_name(file_path)
            files.append(
                {
                    "path": file_path,
                    "name": shown,
                    "content_type": content_type or default_type(shown),
                }
            )
    return files or None


def template_attachments(template: Reader, kind: str | None) -> tuple[bool, list[str] | None]:
    """``template.attachments``: whether the document's files are attached, and the
    definition's own files."""
    default = kind in DOCUMENT_FILES_BY_DEFAULT
    section = template.sub("attachments", required=False)
    if section is None:
        return default, None
    attach = section.boolean("document_files", default=default)
    if attach and kind is not None and DOCUMENT_KIND_OF.get(kind) is None:
        section.problem(
            "document_files", f"a definition of kind {kind} has no document whose files to attach"
        )
    paths: list[str] = []
    for path, value in section.items("files"):
        # The element's own path: _path reports at the list position.
        holder = Reader(section.problems, path, {})
        if (checked := _path(holder, "", value)) is not None:
            paths.append(checked)
    section.finish()
    return bool(attach), paths or None


def folder_required(first: str) -> Problem:
    """Files are listed (the first at JSON path ``first``) and no folder is given."""
    return Problem(
        "organisation.documents_folder",
        f"required when a file is listed (the first at {first}): the folder "
        "files' paths are relative to",
    )


def check_folder(
    folder: str | None,
    documents: list[tuple[str, list[dict[str, str]] | None]],
    definitions: list[tuple[str, list[str] | None]],
) -> list[Problem]:
    """Every listed file needs a folder, and none may leave it (links existing now included).

    ``documents``: (JSON path of the document, its files); ``definitions``: (JSON path
    of the definition, its ``template.attachments.files``)."""
    problems: list[Problem] = []
    listed = [
        (join(join(join(at, "files"), index), "path"), item["path"])
        for at, files in documents
        for index, item in enumerate(files or ())
    ] + [
        (join(join(join(join(at, "template"), "attachments"), "files"), index), path)
        for at, paths in definitions
        for index, path in enumerate(paths or ())
    ]
    if not listed:
        return problems
    if folder is None:
        return [folder_required(listed[0][0])]
    for at, path in listed:
        if (why := leaves_folder(folder, path)) is not None:
            problems.append(Problem(at, f"{path!r} {why}"))
    return problems
