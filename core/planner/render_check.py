"""A plan renders its definition's templates for a sample of its recipients.

A template that fails for a recipient fails that recipient at sending; one that
fails for everyone (``{{ document.amount }}`` where there is no document, a
misspelt attribute) would fail the whole run one recipient at a time. So a
plan renders the templates for its first ``SAMPLE`` included candidates, as a
delivery would (``core.messages.compose``), and lists what failed among its
warnings (customer and error, ``domain.md``); ``run start`` refuses a
definition whose templates fail for every one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

from core.messages.compose import (
    Templates,
    draft_of,
    message_contexts,
    templates_of,
    with_unsubscribe,
)
from core.messages.due import Due
from core.states import PENDING
from core.templating import RenderError, render

SAMPLE = 100
# The parts of a message rendered from templates, and whether each is HTML.
PARTS: tuple[tuple[str, bool], ...] = (("subject", False), ("text", False), ("html", True))


class Sampled(Protocol):
    """What the check reads of a plan's candidate."""

    @property
    def customer(self) -> str: ...
    @property
    def contact(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def document(self) -> str | None: ...


@dataclass(frozen=True)
class RenderFailure:
    customer: str
    part: str  # subject, text or html
    error: str


@dataclass(frozen=True)
class RenderCheck:
    """How the templates fared for the sampled candidates."""

    sampled: int
    failures: tuple[RenderFailure, ...]

    @property
    def fails_for_everyone(self) -> bool:
        return self.sampled > 0 and len(self.failures) == self.sampled

    def errors(self) -> list[str]:
        """Each distinct error once, with the template it came from."""
        found = dict.fromkeys(f"template.{f.part}: {f.error}" for f in self.failures)
        return list(found)

    def warnings(self) -> list[str]:
        """One warning per distinct error, naming every customer it failed for."""
        by_error: dict[tuple[str, str], list[str]] = {}
        for failure in self.failures:
            by_error.setdefault((failure.part, failure.error), []).append(failure.customer)
        return [
            f"template.{part} fails to render ({error}) for {len(customers)} of the first "
            f"{self.sampled} included: {'customer' if len(customers) == 1 else 'customers'} "
            f"{', '.join(customers)}"
            for (part, error), customers in by_error.items()
        ]


def first_failure(templates: Templates, values: dict[str, object]) -> tuple[str, str] | None:
    """(part, error) of the first template that fails for these values, or None."""
    for part, html in PARTS:
        source = getattr(templates, part)
        if not source:
            continue
        try:
            render(source, dict(values), html=html)
        except RenderError as error:
            return part, str(error)
    return None


def check_rendering(
    connection: Connection, definition_id: str, included: Iterable[Sampled]
) -> RenderCheck:
    """Render the definition's templates for the first ``SAMPLE`` of ``included``."""
    sample: list[Sampled] = []
    for candidate in included:
        if candidate.address is not None:
            sample.append(candidate)
            if len(sample) == SAMPLE:
                break
    if not sample:
        return RenderCheck(0, ())
    templates = templates_of(connection, definition_id)
    due = _as_due(sample)
    contexts = message_contexts(connection, due)
    failures = []
    for candidate, one in zip(sample, due, strict=True):
        # As a message renders them: with its unsubscribe link, when it has one.
        values, _ = with_unsubscribe(
            templates, draft_of(one, templates, contexts).values, 0, one.position
        )
        found = first_failure(templates, values)
        if found is not None:
            failures.append(RenderFailure(candidate.customer, *found))
    return RenderCheck(len(sample), tuple(failures))


def _as_due(sample: Sequence[Sampled]) -> list[Due]:
    """The candidates as a delivery reads its recipients (what ``draft_of`` takes)."""
    return [
        Due(
            id=0,
            state=PENDING,
            position=position,
            customer_id=c.customer,
            contact_id=c.contact,
            address=c.address or "",
            document_id=c.document,
            offset_days=None,
            message_id="",
            attempts=0,
        )
        for position, c in enumerate(sample)
    ]
