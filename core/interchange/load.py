"""Importing an interchange file a record at a time, in memory that does not grow with it.

One pass over the file (``stream.py``) inside one transaction: each record is
checked where it is read (``parse.py``), a batch at a time its ids are
checked against those read before (``import_seen``, a scratch table) and its
references against the file and what is stored, and, while the file has
shown no problem, the batch is written. A reference that is found neither is
kept in a scratch table and looked for again at the end, when the whole file
is in: a document may come before its customer. A row whose target is not
written yet waits in a scratch table too, and is written at the end.

Any problem anywhere and the transaction is rolled back: nothing is written.
Problems are listed in the order of the file's sections, as ``parse.py``
reads them, then those of references (by kind of reference, in file order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Table, and_, exists, insert, select

from core.interchange import files, scratch
from core.interchange.parse import (
    ORGANISATION_ID,
    IdRegistry,
    ParsedFile,
    Progress,
    Row,
    _billing_method,
    _customer,
    _definition,
    _document,
    _history,
    _organisation,
    _smtp_profile,
    _suppression,
)
from core.interchange.reader import MISSING, JsonObject, Problem, Reader, join, type_name
from core.interchange.references import chunks
from core.interchange.stream import Element, NotAnObject, TopKey, Whole, iter_file
from core.interchange.write import (
    delete_services,
    write_customers,
    write_organisation,
    write_rows,
)
from core.storage.models import (
    BillingMethod,
    Customer,
    Definition,
    Document,
    Organisation,
    Service,
    SmtpProfile,
    table_of,
)
from core.unsubscribe.records import forget_all
from core.vocabulary import FORMAT

SECTIONS = (
    "smtp_profiles",
    "billing_methods",
    "customers",
    "documents",
    "suppressions",
    "definitions",
    "history",
)
BATCH = 1000  # records of a section checked and written together
PROGRESS_EVERY = 2000

# The kinds of ids: registry name, noun in messages, the section that gives them.
KINDS = {
    "smtp": ("SMTP profile", "smtp_profiles"),
    "billing": ("billing method", "billing_methods"),
    "customer": ("customer", "customers"),
    "contact": ("contact", "customers"),
    "service": ("service", "customers"),
    "document": ("document", "documents"),
    "definition": ("definition", "definitions"),
    "suppression": ("suppression address", "suppressions"),
}
# Reference groups, in the order their problems are listed: (section, column,
# key in the file, noun, kind of id, stored table).
REFERENCES: tuple[tuple[str, str, str, str, str, Table], ...] = (
    ("documents", "customer_id", "customer", "customer", "customer", table_of(Customer)),
    (
        "documents",
        "billing_method_id",
        "billing_method",
        "billing method",
        "billing",
        table_of(BillingMethod),
    ),
    (
        "definitions",
        "smtp_profile_id",
        "smtp_profile",
        "SMTP profile",
        "smtp",
        table_of(SmtpProfile),
    ),
    ("history", "definition_id", "definition", "definition", "definition", table_of(Definition)),
    ("history", "customer_id", "customer", "customer", "customer", table_of(Customer)),
    ("history", "document_id", "document", "document", "document", table_of(Document)),
)
SERVICE_GROUP = "documents.service"
# Rows written only once every row they point to is: section → its foreign keys.
FOREIGN_KEYS: dict[str, tuple[tuple[str, Table], ...]] = {
    "documents": (
        ("customer_id", table_of(Customer)),
        ("service_id", table_of(Service)),
        ("billing_method_id", table_of(BillingMethod)),
    ),
    "definitions": (("smtp_profile_id", table_of(SmtpProfile)),),
    "history": (
        ("definition_id", table_of(Definition)),
        ("customer_id", table_of(Customer)),
        ("document_id", table_of(Document)),
    ),
}
RECORD_OF = {
    "smtp_profiles": _smtp_profile,
    "billing_methods": _billing_method,
    "documents": _document,
    "suppressions": _suppression,
    "definitions": _definition,
    "history": _history,
}
REGISTRY_OF = {
    "smtp_profiles": ("smtp", "id"),
    "billing_methods": ("billing", "id"),
    "documents": ("document", "id"),
    "suppressions": ("suppression", "address_lower"),
    "definitions": ("definition", "id"),
}


@dataclass
class Loaded:
    """What reading the file found: its problems in order, and the counts of its records."""

    problems: list[Problem]
    counts: dict[str, int]


@dataclass
class _Batch:
    """The records of one section read since the last flush."""

    parsed: ParsedFile = field(default_factory=ParsedFile)
    first_index: int = 0
    size: int = 0


class FileLoader:
    """Reads one file into ``connection``'s transaction; the caller commits or rolls back."""

    def __init__(
        self,
        connection: Connection,
        progress: Progress | None = None,
        *,
        replace_organisation: bool = False,
        base: str = ".",
    ) -> None:
        self.connection = connection
        self.progress = progress
        self.replace_organisation = replace_organisation
        self.base = base
        self.top_head: list[Problem] = []
        self.top_tail: list[Problem] = []
        self.section_problems: dict[str, list[Problem]] = {
            name: [] for name in ("organisation", *SECTIONS)
        }
        self.reference_problems: dict[str, list[tuple[int, Problem]]] = {
            f"{group[0]}.{group[2]}": [] for group in REFERENCES
        }
        self.reference_problems[SERVICE_GROUP] = []
        self.removed_problems: list[Problem] = []
        self.organisation_problems: list[Problem] = []
        # The documents' and definitions' files (attachments.md): checked against the
        # organisation's documents_folder once it is read; those listed before it wait.
        self.files = _ListedFiles()
        self.registries = {
            name: IdRegistry(self.section_problems[section], noun)
            for name, (noun, section) in KINDS.items()
        }
        self.counts = dict.fromkeys(ParsedFile().counts(), 0)
        self.top: JsonObject = JsonObject()
        self.top_keys: list[str] = []
        self.batch = _Batch()
        self.section = ""
        self.not_an_object: str | None = None
        self.seen_rows = 0
        self.analysed_at = 250

    # -- reading ------------------------------------------------------------

    def load(self, file: Any) -> Loaded:
        self.file = file
        start = file.tell()
        self.size = file.seek(0, 2)
        file.seek(start)
        scratch.create(self.connection)
        for event in iter_file(file):
            if isinstance(event, Element):
                self._element(event)
            elif isinstance(event, TopKey):
                self._flush()
                self._top_key(event.name)
            elif isinstance(event, Whole):
                self._whole(event.section, event.value)
            elif isinstance(event, NotAnObject):
                self.not_an_object = event.type_name
        if self.not_an_object is not None:
            return Loaded([Problem("", f"expected an object, got {self.not_an_object}")], {})
        self._flush()
        scratch.analyse(self.connection)
        self._top_level()
        self.files.finish()
        self._check_pending_references()
        self._check_removed_services()
        problems = self.problems()
        if not problems:
            self._write_later()
        return Loaded(problems, dict(self.counts))

    def problems(self) -> list[Problem]:
        ordered = list(self.top_head)
        for name in ("organisation", *SECTIONS):
            ordered += self.section_problems[name]
        ordered += self.top_tail
        ordered += self.files.problems()
        for group in self.reference_problems.values():
            ordered += [problem for _, problem in sorted(group, key=lambda item: item[0])]
        return ordered + self.removed_problems + self.organisation_problems

    @property
    def clean(self) -> bool:
        """No problem so far: batches are still written (else only checked)."""
        return not (
            self.top_head
            or any(self.section_problems.values())
            or any(self.reference_problems.values())
            or self.removed_problems
            or self.organisation_problems
            or self.files.found_any
        )

    def _top_key(self, name: str) -> None:
        if name in self.top:
            duplicates = self.top.duplicate_keys
            if name not in duplicates:
                self.top.duplicate_keys = (*duplicates, name)
        else:
            self.top[name] = None
        self.section = name

    def _whole(self, section: str, value: Any) -> None:
        if self.top.get(section) is not None and section in self.top.duplicate_keys:
            return  # a key given twice: only the first is read (the file is refused)
        self.top[section] = value
        if value is None:
            return
        if section == "organisation":
            self._organisation(value)
        elif section in SECTIONS:
            self.section_problems[section].append(
                Problem(section, f"expected a list, got {type_name(value)}")
            )

    def _element(self, event: Element) -> None:
        section = event.section
        if section not in SECTIONS:
            return  # an unknown key: said so at the end
        if section in self.top.duplicate_keys:
            return
        self.top[section] = []
        path = join(section, event.index)
        problems = self.section_problems[section]
        batch = self.batch
        if batch.size == 0:
            batch.first_index = event.index
        batch.size += 1
        if section == "customers":
            _customer(Reader(problems, path, event.value), batch.parsed, self.registries)
            if self.progress is not None and (event.index + 1) % PROGRESS_EVERY == 0:
                self.progress("checking customers", event.index + 1, event.index + 1)
        else:
            row = RECORD_OF[section](Reader(problems, path, event.value))
            if section in REGISTRY_OF:
                kind, column = REGISTRY_OF[section]
                self.registries[kind].add(row.get(column), path)
            rows: list[Row] = getattr(batch.parsed, section)
            rows.append(Row(path, row))
        if batch.size >= BATCH:
            self._flush()

    def _organisation(self, value: Any) -> None:
        # A relative documents_folder is the imported file's neighbour.
        files.anchor_folder({"organisation": value}, self.base)
        organisation = _organisation(
            Reader(self.section_problems["organisation"], "organisation", value)
        )
        self.files.folder_known(organisation.get("documents_folder"))
        other = self._another_organisation(organisation)
        if not self.replace_organisation:
            self.organisation_problems += other
        elif other:
            # Another organisation's unsubscribes name nobody of this one (inbox.md); the
            # database's own secret stays.
            forget_all(self.connection)
        if self.clean:
            write_organisation(self.connection, organisation)

    def _another_organisation(self, organisation: dict[str, Any]) -> list[Problem]:
        """The file's organisation is not the one stored: a database holds one."""
        name = organisation.get("name")
        if name is None:
            return []
        table = table_of(Organisation)
        stored = self.connection.execute(
            select(table.c.name).where(table.c.id == ORGANISATION_ID)
        ).scalar()
        if stored is None or stored == name:
            return []
        return [
            Problem(
                "organisation.name",
                f"{name!r} is not this database's organisation {stored!r}: a database holds "
                "one organisation (--replace-organisation replaces it)",
            )
        ]

    def _top_level(self) -> None:
        top = Reader(self.top_head, "", self.top)
        fmt = top.raw("format", required=True)
        if fmt is not MISSING and fmt != FORMAT:
            top.problem("format", f"{fmt!r} is not a format msgrun reads; expected {FORMAT!r}")
        top.raw("organisation", required=True)
        for section in SECTIONS:
            top.raw(section, required=False)
        top.problems = self.top_tail
        top.finish()

    # -- a batch ------------------------------------------------------------

    def _flush(self) -> None:
        batch, section = self.batch, self.section
        if batch.size == 0:
            return
        self.batch = _Batch()
        if self.progress is not None and self.size:
            # How far ijson has read (a buffer ahead of the records checked).
            self.progress("reading the file", min(self.file.tell(), self.size), self.size)
        parsed = batch.parsed
        found: list[tuple[int, int, Problem]] = []
        for name, (_, of_section) in KINDS.items():
            if of_section == section:
                found += self._check_ids(name, parsed)
        problems = self.section_problems[section]
        for position, _, problem in sorted(found, reverse=True):
            problems.insert(position, problem)
        counts = parsed.counts()
        for key, count in counts.items():
            self.counts[key] += count
        if section == "customers":
            if self.clean:
                write_customers(
                    self.connection,
                    [row.values for row in parsed.customers],
                    [row.values for row in parsed.contacts],
                    [row.values for row in parsed.addresses],
                    [row.values for row in parsed.services],
                )
            if self.progress is not None:
                done = self.counts["customers"]
                self.progress("checking customers", done, done)
                self.progress("writing customers", done, done)
            return
        rows = getattr(parsed, section)
        if section == "documents":
            self.files.add_documents([(row.path, row.values.get("files")) for row in rows])
        elif section == "definitions":
            self.files.add_definitions(
                [(row.path, row.values.get("attachment_files")) for row in rows]
            )
        self._check_references(section, rows, batch.first_index)
        if section == "documents":
            self._check_document_services(rows, batch.first_index)
        if not self.clean:
            return
        values = [row.values for row in rows]
        now, later = self._ready(section, values)
        write_rows(self.connection, section, now)
        scratch.keep_for_later(self.connection, section, later)
        if self.progress is not None:
            done = self.counts[section]
            self.progress(f"writing {section}", done, done)

    def _check_ids(self, kind: str, parsed: ParsedFile) -> list[tuple[int, int, Problem]]:
        """Ids given before (in this batch or an earlier one): problems, with where noticed."""
        registry = self.registries[kind]
        pending, registry.pending = registry.pending, []
        if not pending:
            return []
        seen = scratch.seen
        earlier: dict[str, str] = {}
        for batch in chunks(sorted({entry[0] for entry in pending})):
            rows = self.connection.execute(
                select(seen.c.id, seen.c.path).where(seen.c.kind == kind, seen.c.id.in_(batch))
            )
            earlier.update({row.id: row.path for row in rows})
        owners = self._owners(kind, parsed)
        found: list[tuple[int, int, Problem]] = []
        new: list[dict[str, Any]] = []
        for ident, path, position, order in pending:
            first = earlier.setdefault(ident, path)
            if first != path:
                problem = Problem(path, f"duplicate {registry.noun} id {ident!r} (also at {first})")
                found.append((position, order, problem))
            else:
                new.append({"kind": kind, "id": ident, "path": path, "owner": owners.get(path)})
        for chunk in chunks(new):
            self.connection.execute(insert(seen), chunk)
        self.seen_rows += len(new)
        if self.seen_rows >= self.analysed_at * 4:
            # PostgreSQL plans the lookups above from statistics it has only when told.
            scratch.analyse(self.connection)
            self.analysed_at = self.seen_rows
        return found

    @staticmethod
    def _owners(kind: str, parsed: ParsedFile) -> dict[str, str | None]:
        """path → the customer that lists a service (whose owner the service checks need)."""
        if kind != "service":
            return {}
        return {row.path: row.values.get("customer_id") for row in parsed.services}

    def _ready(
        self, section: str, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows whose targets are all stored already, and those that must wait."""
        keys = FOREIGN_KEYS.get(section)
        if not keys:
            return rows, []
        present: dict[str, set[str]] = {}
        for column, table in keys:
            wanted = {row[column] for row in rows if row.get(column) is not None}
            present[column] = self._stored(table, wanted)
        now: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for row in rows:
            ready = all(
                row.get(column) is None or row[column] in present[column] for column, _ in keys
            )
            (now if ready else later).append(row)
        return now, later

    def _stored(self, table: Table, wanted: set[str]) -> set[str]:
        id_column: Column[str] = table.c.id
        found: set[str] = set()
        for batch in chunks(sorted(wanted)):
            found.update(
                self.connection.execute(select(id_column).where(id_column.in_(batch))).scalars()
            )
        return found

    def _in_file(self, kind: str, wanted: set[str]) -> set[str]:
        seen = scratch.seen
        found: set[str] = set()
        for batch in chunks(sorted(wanted)):
            found.update(
                self.connection.execute(
                    select(seen.c.id).where(seen.c.kind == kind, seen.c.id.in_(batch))
                ).scalars()
            )
        return found

    def _check_references(self, section: str, rows: list[Any], first_index: int) -> None:
        """References found nowhere yet are kept to be looked for again at the end."""
        pending: list[dict[str, Any]] = []
        for group_section, column, key, _, kind, table in REFERENCES:
            if group_section != section:
                continue
            wanted = {row.values[column] for row in rows if row.values.get(column) is not None}
            if not wanted:
                continue
            known = self._in_file(kind, wanted)
            known |= self._stored(table, wanted - known)
            for offset, row in enumerate(rows):
                target = row.values.get(column)
                if target is not None and target not in known:
                    pending.append(
                        {
                            "grp": f"{section}.{key}",
                            "position": first_index + offset,
                            "path": join(row.path, key),
                            "target": target,
                            "customer": None,
                        }
                    )
        for batch in chunks(pending):
            self.connection.execute(insert(scratch.reference), batch)

    def _check_document_services(self, rows: list[Any], first_index: int) -> None:
        """A document's service must be its customer's once the file is in.

        A service the file lists has its owner now; one it does not may be
        moved or removed by a customer further on, so it is checked at the end.
        """
        wanted = {row.values["service_id"] for row in rows if row.values.get("service_id")}
        if not wanted:
            return
        seen = scratch.seen
        owner: dict[str, str | None] = {}
        for batch in chunks(sorted(wanted)):
            found = self.connection.execute(
                select(seen.c.id, seen.c.owner).where(
                    seen.c.kind == "service", seen.c.id.in_(batch)
                )
            )
            owner.update({row.id: row.owner for row in found})
        pending = []
        for offset, row in enumerate(rows):
            service = row.values.get("service_id")
            if service is None:
                continue
            position = first_index + offset
            if service in owner:
                self._service_problem(
                    position,
                    row.path,
                    service,
                    row.values.get("customer_id"),
                    found=True,
                    owner=owner[service],
                )
            else:
                pending.append(
                    {
                        "grp": SERVICE_GROUP,
                        "position": position,
                        "path": row.path,
                        "target": service,
                        "customer": row.values.get("customer_id"),
                    }
                )
        for batch in chunks(pending):
            self.connection.execute(insert(scratch.reference), batch)

    def _service_problem(
        self,
        position: int,
        path: str,
        service: str,
        customer: str | None,
        *,
        found: bool,
        owner: str | None,
    ) -> None:
        """``found``: the service exists once the file is in; ``owner``: its customer, None
        when that customer has no usable id (a problem said at the id's own path)."""
        problems = self.reference_problems[SERVICE_GROUP]
        if not found:
            problems.append(
                (
                    position,
                    Problem(
                        join(path, "service"),
                        f"refers to service {service!r}, which is neither in the file nor stored",
                    ),
                )
            )
        elif customer is not None and owner is not None and owner != customer:
            problems.append(
                (
                    position,
                    Problem(
                        join(path, "service"),
                        f"service {service!r} belongs to customer {owner!r}, not to {customer!r}",
                    ),
                )
            )

    # -- the end ------------------------------------------------------------

    def _check_pending_references(self) -> None:
        reference, seen = scratch.reference, scratch.seen
        for section, _, key, noun, kind, table in REFERENCES:
            group = f"{section}.{key}"
            in_file = exists().where(seen.c.kind == kind, seen.c.id == reference.c.target)
            stored = exists().where(table.c.id == reference.c.target)
            query = (
                select(reference.c.position, reference.c.path, reference.c.target)
                .where(reference.c.grp == group, ~in_file, ~stored)
                .order_by(reference.c.seq)
            )
            for row in self.connection.execute(query):
                self.reference_problems[group].append(
                    (
                        row.position,
                        Problem(
                            row.path,
                            f"refers to {noun} {row.target!r}, which is neither in the file "
                            "nor stored",
                        ),
                    )
                )
        # Services the file does not list: their stored owner, unless the file
        # lists that customer without them (then they are removed).
        service = table_of(Service)
        listed_customer = exists().where(
            seen.c.kind == "customer", seen.c.id == service.c.customer_id
        )
        query = (
            select(
                reference.c.position,
                reference.c.path,
                reference.c.target,
                reference.c.customer,
                service.c.customer_id,
                listed_customer.label("removed"),
            )
            .select_from(reference.outerjoin(service, service.c.id == reference.c.target))
            .where(reference.c.grp == SERVICE_GROUP)
            .order_by(reference.c.seq)
        )
        for row in self.connection.execute(query):
            found = row.customer_id is not None and not row.removed
            owner = row.customer_id if found else None
            # A service listed further on in the file has its owner in import_seen.
            listed = self.connection.execute(
                select(seen.c.owner).where(seen.c.kind == "service", seen.c.id == row.target)
            ).first()
            if listed is not None:
                found, owner = True, listed.owner
            self._service_problem(
                row.position, row.path, row.target, row.customer, found=found, owner=owner
            )

    def _removed_services(self) -> dict[str, str]:
        """Stored services of customers in the file that it no longer lists → their customer."""
        service, seen = table_of(Service), scratch.seen
        other = seen.alias("listed")
        listed = exists().where(other.c.kind == "service", other.c.id == service.c.id)
        query = (
            select(service.c.id, service.c.customer_id, seen.c.path)
            .select_from(
                service.join(
                    seen, and_(seen.c.kind == "customer", seen.c.id == service.c.customer_id)
                )
            )
            .where(~listed)
            .order_by(service.c.id)
        )
        self._removed_paths = {}
        removed = {}
        for row in self.connection.execute(query):
            removed[row.id] = row.customer_id
            self._removed_paths[row.id] = row.path
        return removed

    def _check_removed_services(self) -> None:
        """A service a customer no longer lists is removed: not while a stored document uses it."""
        self.removed = self._removed_services()
        if not self.removed:
            return
        document, seen = table_of(Document), scratch.seen
        in_file = exists().where(seen.c.kind == "document", seen.c.id == document.c.id)
        for batch in chunks(sorted(self.removed)):
            rows = self.connection.execute(
                select(document.c.id, document.c.service_id)
                .where(document.c.service_id.in_(batch), ~in_file)
                .order_by(document.c.service_id, document.c.id)
            )
            for user in rows:
                self.removed_problems.append(
                    Problem(
                        join(self._removed_paths[user.service_id], "services"),
                        f"no longer lists service {user.service_id!r}, which stored document "
                        f"{user.id!r} still uses",
                    )
                )

    def _write_later(self) -> None:
        """The rows that waited for rows further on in the file; then the removed services go."""
        for section in ("definitions", "documents", "history"):
            for rows in scratch.rows_for_later(self.connection, section):
                write_rows(self.connection, section, rows)
        if self.removed:
            delete_services(self.connection, list(self.removed))


class _ListedFiles:
    """``files.check_folder`` over a file read a batch at a time.

    Only records that list files are kept, and only until the organisation (its
    ``documents_folder``) is read; after it each batch is checked as it comes.
    Problems come as ``check_folder`` gives them: the documents', then the definitions'.
    """

    def __init__(self) -> None:
        self.known = False
        self.folder: str | None = None
        self.waiting_documents: list[tuple[str, list[dict[str, str]] | None]] = []
        self.waiting_definitions: list[tuple[str, list[str] | None]] = []
        self.first_document: str | None = None
        self.first_definition: str | None = None
        self.document_problems: list[Problem] = []
        self.definition_problems: list[Problem] = []
        self.missing_folder: list[Problem] = []

    @property
    def found_any(self) -> bool:
        return bool(self.document_problems or self.definition_problems or self.missing_folder)

    def problems(self) -> list[Problem]:
        if self.missing_folder:
            return list(self.missing_folder)
        return self.document_problems + self.definition_problems

    def folder_known(self, folder: str | None) -> None:
        if self.known:
            return  # a second organisation key: only the first is read
        self.known, self.folder = True, folder
        waiting_documents, self.waiting_documents = self.waiting_documents, []
        waiting_definitions, self.waiting_definitions = self.waiting_definitions, []
        self.add_documents(waiting_documents)
        self.add_definitions(waiting_definitions)

    def add_documents(self, listed: list[tuple[str, list[dict[str, str]] | None]]) -> None:
        listed = [(path, specs) for path, specs in listed if specs]
        if not listed:
            return
        if self.first_document is None:
            self.first_document = join(join(join(listed[0][0], "files"), 0), "path")
        if not self.known:
            self.waiting_documents += listed
        elif self.folder is not None:
            self.document_problems += files.check_folder(self.folder, listed, [])

    def add_definitions(self, listed: list[tuple[str, list[str] | None]]) -> None:
        listed = [(path, specs) for path, specs in listed if specs]
        if not listed:
            return
        if self.first_definition is None:
            self.first_definition = join(
                join(join(join(listed[0][0], "template"), "attachments"), "files"), 0
            )
        if not self.known:
            self.waiting_definitions += listed
        elif self.folder is not None:
            self.definition_problems += files.check_folder(self.folder, [], listed)

    def finish(self) -> None:
        """At the end of the file: a file listed needs a folder (with or without an
        organisation read)."""
        self.folder_known(None)
        first = self.first_document or self.first_definition
        if self.folder is None and first is not None:
            self.missing_folder = [files.folder_required(first)]


ProgressCallback = Callable[[str, int, int], None]

__all__ = ["FileLoader", "Loaded"]
