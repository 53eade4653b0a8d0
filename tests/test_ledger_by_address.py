"""Rule 16 for a kind without documents (per_document dedup): its ledger entries are
filed by address so that a candidate reads its own address's (and the address-less
ones), not the whole ledger; the answer is the one the whole ledger, walked newest
first, gives (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.planner.facts import (
    AddressFacts,
    CustomerFacts,
    DefinitionFacts,
    HistoryFacts,
    OrganisationFacts,
)
from core.planner.plan import _file_history
from core.planner.rules import Context, already_sent

AT = datetime(2026, 11, 23, tzinfo=UTC)
ADDRESSES = ["ana@example.org", "bo@example.org", None]


def context(billing: bool) -> Context:
    definition = DefinitionFacts(
        id="news",
        name="News",
        kind="broadcast",
        document_kind=None,
        address_key="billing",
        smtp_profile_id="main",
        trigger_type="manual",
        trigger_cron=None,
        trigger_event=None,
        trigger_enabled=True,
        clusters=None,
        document_statuses=None,
        audience=None,
        quiet_hours=None,
        dedup="per_document",
        use_billing_rules=billing,
    )
    organisation = OrganisationFacts(
        name="Org",
        timezone="UTC",
        sender_verified=True,
        toggles={},
        default_address_preferences={},
        default_contact_preferences={},
    )
    return Context(
        organisation=organisation,
        definition=definition,
        at=AT,
        billing_date=date(2026, 11, 23),
        methods={},
        suppressions={},
        has_history=True,
    )


entries = st.lists(
    st.builds(
        lambda address, offset, day, run: HistoryFacts(
            "C1", address, None, offset, AT - timedelta(days=day), run
        ),
        st.sampled_from(ADDRESSES),
        st.sampled_from([None, 0, 3]),
        st.integers(0, 3),
        st.sampled_from([None, 1, 2]),
    ),
    max_size=8,
).map(lambda xs: sorted(xs, key=lambda e: e.at, reverse=True))  # newest first, as read


def walked(history: list[HistoryFacts], lower: str | None, billing: bool) -> HistoryFacts | None:
    """The rule as it reads the whole ledger: the newest entry for this address (or for
    none), its offset not another's."""
    for entry in history:
        if entry.address_lower is not None and entry.address_lower != lower:
            continue
        if billing and entry.offset_days is not None:
            continue  # a candidate without a document has no offset
        return entry
    return None


@given(history=entries, lower=st.sampled_from(ADDRESSES), billing=st.booleans())
def test_filed_by_address_answers_as_the_whole_ledger(
    history: list[HistoryFacts], lower: str | None, billing: bool
) -> None:
    ctx = context(billing)
    _file_history(ctx, history)
    check = already_sent(ctx)
    assert check is not None
    address = (
        AddressFacts("C1", "C1-1", "Ana", True, None, lower, lower, None, None)
        if lower is not None
        else None
    )
    found = check(CustomerFacts("C1", "C", None, None, None), address, None)
    expected = walked(history, lower, billing)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.run == expected.run_id
        assert expected.at.date().isoformat() in found.detail
