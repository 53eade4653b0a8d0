"""The documents' files as they are now, each looked at once per plan."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.attachments.folder import Checked, FileProblem, FolderMissing, check


@dataclass(frozen=True, slots=True)
class Missing:
    """A file that cannot be attached now, and why (a sentence naming the path)."""

    path: str
    why: str


@dataclass
class FileLook:
    """What each path of the documents folder is now (its size, or why it is missing),
    looked at once however many candidates attach it."""

    folder: str | None
    seen: dict[str, Checked | Missing] = field(default_factory=dict)

    def look(self, path: str) -> Checked | Missing:
        found = self.seen.get(path)
        if found is None:
            found = self.seen[path] = self._look(path)
        return found

    def _look(self, path: str) -> Checked | Missing:
        if self.folder is None:
            return Missing(path, f"{path}: the organisation has no documents_folder")
        try:
            return check(self.folder, path)
        except FileProblem as problem:
            return Missing(path, str(problem))
        except FolderMissing as problem:
            return Missing(path, f"{path}: {problem}")
