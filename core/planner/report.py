"""Plans as the JSON objects of interchange.md (``msgrun plan --json``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import IO, Any

from core.clock import format_instant
from core.planner.load import load_definition, load_organisation
from core.planner.plan import (
    DECISIONS,
    Candidate,
    Gathered,
    Plan,
    Summary,
    gathered_warnings,
    iter_plan,
    profile_warnings,
)
from core.planner.reasons import CODES, fix_for
from core.storage.database import Database

SPOOL_CHUNK = 1 << 20


def candidate_json(candidate: Candidate, *, with_fix: bool = False) -> dict[str, Any]:
    return {
        "customer": candidate.customer,
        "contact": candidate.contact,
        "address": candidate.address,
        "document": candidate.document,
        "label": candidate.label,
        "decision": candidate.decision,
        "reasons": [
            {"code": r.code, "detail": r.detail, "fix": fix_for(r.code)}
            if with_fix
            else {"code": r.code, "detail": r.detail}
            for r in candidate.reasons
        ],
        "send_after": (
            format_instant(candidate.send_after) if candidate.send_after is not None else None
        ),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "definition": plan.definition.id,
        "at": format_instant(plan.at),
        "summary": plan.summary.as_json(),
        "candidates": [candidate_json(candidate) for candidate in plan.candidates],
        "warnings": list(plan.warnings),
    }


def dumps(value: Any) -> str:
    """The one JSON form of every output: stable, UTF-8, indented."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def nested(value: Any, depth: int) -> str:
    """``dumps(value)`` as it reads ``depth`` levels deep in an indented document."""
    return dumps(value).replace("\n", "\n" + "  " * depth)


def _text(value: str | None) -> str:
    return "null" if value is None else str(encode_basestring(value))


def _reason_head(code: str) -> str:
    return '\n        {\n          "code": ' + _text(code) + ',\n          "detail": '


# What a candidate's text repeats, written once: each code's opening, each decision.
_REASON_HEADS = {code: _reason_head(code) for code in CODES}
_DECISIONS = {decision: _text(decision) for decision in DECISIONS}


def candidate_text(candidate: Candidate) -> str:
    """``nested(candidate_json(candidate), 2)``, the same bytes, written out.

    json's indented encoder is its pure-Python one; this is the one place a
    plan's JSON spends time a candidate, so the form is spelled here (a test
    holds it to ``json.dumps`` for every candidate of the samples' plans).
    """
    encode = encode_basestring
    if candidate.reasons:
        reasons = (
            "["
            + ",".join(
                [
                    (_REASON_HEADS.get(reason.code) or _reason_head(reason.code))
                    + encode(reason.detail)
                    + "\n        }"
                    for reason in candidate.reasons
                ]
            )
            + "\n      ]"
        )
    else:
        reasons = "[]"
    contact, address, document, label = (
        candidate.contact,
        candidate.address,
        candidate.document,
        candidate.label,
    )
    send_after = candidate.send_after
    return (
        '{\n      "customer": '
        + encode(candidate.customer)
        + ',\n      "contact": '
        + ("null" if contact is None else encode(contact))
        + ',\n      "address": '
        + ("null" if address is None else encode(address))
        + ',\n      "document": '
        + ("null" if document is None else encode(document))
        + ',\n      "label": '
        + ("null" if label is None else encode(label))
        + ',\n      "decision": '
        + (_DECISIONS.get(candidate.decision) or _text(candidate.decision))
        + ',\n      "reasons": '
        + reasons
        + ',\n      "send_after": '
        + (_text(format_instant(send_after)) if send_after is not None else "null")
        + "\n    }"
    )


def iter_plan_json(plan: Plan) -> Iterator[str]:
    """``dumps(plan_json(plan))`` in pieces, a candidate at a time.

    The same bytes, without holding a million dicts and one huge string.
    """
    yield from _head(plan.definition.id, plan.at, plan.summary)
    yield from _candidates(plan.candidates)
    yield from _tail(plan.warnings)


def _head(definition_id: str, at: datetime, summary: Summary) -> Iterator[str]:
    yield "{\n"
    yield f'  "definition": {dumps(definition_id)},\n'
    yield f'  "at": {dumps(format_instant(at))},\n'
    yield f'  "summary": {nested(summary.as_json(), 1)},\n'


def _candidates(candidates: Iterable[Candidate]) -> Iterator[str]:
    separator = '  "candidates": [\n    '
    for candidate in candidates:
        yield separator + candidate_text(candidate)
        separator = ",\n    "
    yield '  "candidates": [],\n' if separator.startswith("  ") else "\n  ],\n"


def _tail(warnings: list[str]) -> Iterator[str]:
    yield f'  "warnings": {nested(list(warnings), 1)}\n'
    yield "}"


def stream_plan_json(
    database: Database,
    definition_id: str,
    at: datetime,
    environ: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """``msgrun plan --json``: ``iter_plan_json(make_plan(...))`` without the plan in memory.

    The summary comes before the candidates, and is known only once they all
    are: each candidate's JSON is written to a temporary file as it is
    decided (``spool_plan``), then the head, that file and the tail are given
    out. Planning is done when this returns (a ``PlanningError`` is raised
    here, not later).
    """
    spooled = spool_plan(database, definition_id, at, _candidates, environ)
    head = list(_head(spooled.plan.definition.id, at, spooled.plan.summary))
    return _give(spooled.spool, head, spooled.plan.warnings)


@dataclass
class Spooled:
    """A plan whose candidates were written to ``spool`` as they were decided:
    ``plan`` is everything else of it (its ``candidates`` empty), known once they all are."""

    plan: Plan
    spool: IO[str]


def spool_plan(
    database: Database,
    definition_id: str,
    at: datetime,
    pieces: Callable[[Iterator[Candidate]], Iterable[str]],
    environ: Mapping[str, str] | None = None,
) -> Spooled:
    """Plan ``definition_id`` at ``at``, writing what ``pieces`` makes of the candidates,
    as they are decided, to a temporary file (at its start when this returns; the
    caller closes it): a plan written out in the memory of a page of customers, its
    summary and warnings still before its candidates."""
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - the caller's
    try:
        with database.snapshot() as connection:  # one plan, however long it takes
            organisation = load_organisation(connection)
            definition = load_definition(connection, definition_id)
            warnings = profile_warnings(connection, definition, environ)
            summary, gathered = Summary(), Gathered()
            candidates = iter_plan(
                connection, organisation, definition, at, summary, gathered=gathered
            )
            _write_batched(spool, pieces(candidates))
            more, rendering = gathered_warnings(connection, organisation, definition, gathered)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    plan = Plan(definition, organisation, at, [], summary, warnings + more, rendering)
    return Spooled(plan, spool)


def _write_batched(spool: IO[str], pieces: Iterable[str], batch: int = 1000) -> None:
    """``spool.writelines(pieces)``, a thousand pieces a write (a write each cost more
    than the candidate's text)."""
    held: list[str] = []
    for piece in pieces:
        held.append(piece)
        if len(held) == batch:
            spool.write("".join(held))
            held.clear()
    spool.write("".join(held))


def _give(spool: IO[str], head: list[str], warnings: list[str]) -> Iterator[str]:
    with spool:
        yield from head
        while chunk := spool.read(SPOOL_CHUNK):
            yield chunk
        yield from _tail(warnings)


__all__ = [
    "candidate_json",
    "candidate_text",
    "dumps",
    "iter_plan_json",
    "plan_json",
    "spool_plan",
    "stream_plan_json",
]
