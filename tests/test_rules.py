"""One test (at least) per reason code of reasons.md, with the detail it gives."""

from __future__ import annotations

from typing import Any

from core.storage import Database
from tests.planning import codes, details, only, plan_of

Doc = dict[str, Any]


def customer(doc: Doc) -> Doc:
    c: Doc = doc["customers"][0]
    return c


def contact(doc: Doc) -> Doc:
    c: Doc = customer(doc)["contacts"][0]
    return c


def address(doc: Doc) -> Doc:
    a: Doc = contact(doc)["addresses"][0]
    return a


def definition(doc: Doc) -> Doc:
    d: Doc = doc["definitions"][0]
    return d


def test_the_minimal_candidate_is_included(db: Database, minimal: Doc) -> None:
    candidate = only(plan_of(db, minimal))
    assert (candidate.decision, candidate.reasons, candidate.send_after) == ("included", (), None)
    assert (candidate.customer, candidate.contact, candidate.address) == (
        "C1",
        "C1-1",
        "ana@example.org",
    )
    assert (candidate.document, candidate.label) == ("D1", "2026-0001")


def test_1_sender_not_verified(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["sender_verified"] = False
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["sender_not_verified"]
    assert (
        "Test Pools has not verified its sending account"
        in details(candidate)["sender_not_verified"]
    )


def test_2_auto_send_disabled_for_routines_and_events(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["outbound"] = {"auto_send_invoices": False}
    definition(minimal)["trigger"] = {"type": "routine", "cron": "0 9 * * *"}
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["auto_send_disabled"]
    assert "auto_send_invoices is off" in details(candidate)["auto_send_disabled"]


def test_2_manual_triggers_are_never_blocked_by_the_toggle(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["outbound"] = {"auto_send_invoices": False}
    assert only(plan_of(db, minimal)).decision == "included"


def test_2_kinds_without_a_toggle_are_not_blocked(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["outbound"] = {"auto_send_invoices": False}
    definition(minimal).update(kind="invoice_reminder", trigger={"type": "event", "event": "x"})
    assert only(plan_of(db, minimal)).decision == "included"


def test_3_no_address_for_key(db: Database, minimal: Doc) -> None:
    address(minimal)["key"] = "primary"
    candidate = only(plan_of(db, minimal))
    assert (candidate.address, candidate.contact) == (None, None)
    assert codes(candidate) == ["no_address_for_key"]
    assert details(candidate)["no_address_for_key"] == (
        "customer C1 has no address under key 'billing' on any contact "
        "(its addresses are under: primary)"
    )


def test_3_skips_rules_4_to_8_but_not_the_rest(db: Database, minimal: Doc) -> None:
    contact(minimal)["addresses"] = []
    contact(minimal)["allow_email"] = False
    minimal["documents"][0]["status"] = "concept"
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["no_address_for_key", "document_status_not_targeted"]
    assert "it has no email address at all" in details(candidate)["no_address_for_key"]


def test_3_every_document_of_an_addressless_customer_is_a_candidate(
    db: Database, minimal: Doc
) -> None:
    contact(minimal)["addresses"] = []
    minimal["documents"].append({**minimal["documents"][0], "id": "D2", "number": None})
    plan = plan_of(db, minimal)
    assert [(c.document, c.label, codes(c)) for c in plan.candidates] == [
        ("D1", "2026-0001", ["no_address_for_key"]),
        ("D2", "Concept", ["no_address_for_key"]),
    ]


def test_4_invalid_address(db: Database, minimal: Doc) -> None:
    address(minimal)["address"] = "ana@@example.org"
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["invalid_address"]
    assert details(candidate)["invalid_address"].startswith(
        "'ana@@example.org' is not a valid email address: "
    )


def test_5_suppressed_case_insensitively(db: Database, minimal: Doc) -> None:
    address(minimal)["address"] = "Ana@Example.ORG"
    minimal["suppressions"] = [
        {"address": "ana@example.org", "reason": "spam_complaint", "since": "2026-09-01"}
    ]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["suppressed"]
    assert details(candidate)["suppressed"] == (
        "Ana@Example.ORG is on the suppression list (listed as ana@example.org): "
        "spam_complaint since 2026-09-01"
    )


def test_5_suppression_dates_do_not_matter(db: Database, minimal: Doc) -> None:
    minimal["suppressions"] = [
        {"address": "ANA@example.org", "reason": "manual", "since": "2030-01-01"}
    ]
    assert codes(only(plan_of(db, minimal))) == ["suppressed"]


def test_6_contact_email_not_allowed(db: Database, minimal: Doc) -> None:
    contact(minimal)["allow_email"] = False
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["contact_email_not_allowed"]
    assert details(candidate)["contact_email_not_allowed"] == (
        "contact C1-1 (Ana) does not allow email (allow_email is false)"
    )


def test_7_address_preference_off(db: Database, minimal: Doc) -> None:
    address(minimal)["preferences"] = {"invoices": False}
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["address_preference_off"]
    assert details(candidate)["address_preference_off"] == (
        "the 'invoices' preference of ana@example.org is off"
    )


def test_7_unset_address_preference_takes_the_organisation_default(
    db: Database, minimal: Doc
) -> None:
    minimal["organisation"]["default_address_preferences"] = {"invoices": False}
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["address_preference_off"]
    assert (
        "unset, and the organisation's default for new addresses is off"
        in details(candidate)["address_preference_off"]
    )


def test_7_a_set_preference_beats_the_default(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["default_address_preferences"] = {"invoices": False}
    address(minimal)["preferences"] = {"invoices": True}
    assert only(plan_of(db, minimal)).decision == "included"


def test_7_unset_everywhere_is_on(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["default_address_preferences"] = {"payment_receipts": False}
    assert only(plan_of(db, minimal)).decision == "included"


def test_7_each_kind_needs_its_own_preference(db: Database, minimal: Doc) -> None:
    address(minimal)["preferences"] = {"invoices": False, "status_updates": False}
    definition(minimal)["kind"] = "payment_receipt"
    minimal["documents"][0]["kind"] = "payment_receipt"
    assert only(plan_of(db, minimal)).decision == "included"


def test_7_status_updates_plan_over_addresses(db: Database, minimal: Doc) -> None:
    address(minimal)["preferences"] = {"status_updates": False}
    definition(minimal)["kind"] = "status_update"
    definition(minimal)["template"]["subject"] = "News"  # no document to name
    candidate = only(plan_of(db, minimal))
    assert (candidate.document, candidate.label) == (None, None)
    assert codes(candidate) == ["address_preference_off"]


def test_8_contact_preference_off(db: Database, minimal: Doc) -> None:
    contact(minimal)["preferences"] = {"send_invoice_reminders": False}
    definition(minimal)["kind"] = "invoice_reminder"
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["contact_preference_off"]
    assert details(candidate)["contact_preference_off"] == (
        "the 'send_invoice_reminders' preference of contact C1-1 (Ana) is off"
    )


def test_8_broadcast_exclusion_is_the_inverted_preference(db: Database, minimal: Doc) -> None:
    contact(minimal)["preferences"] = {"exclude_from_broadcasts": True}
    definition(minimal)["kind"] = "broadcast"
    definition(minimal)["template"]["subject"] = "News"  # no document to name
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["contact_preference_off"]
    assert (
        "'exclude_from_broadcasts' preference of contact C1-1 (Ana) is on"
        in details(candidate)["contact_preference_off"]
    )


def test_8_unset_contact_preference_falls_back_to_the_default_then_permissive(
    db: Database, minimal: Doc
) -> None:
    definition(minimal)["kind"] = "service_reminder"
    definition(minimal)["template"]["subject"] = "News"  # no document to name
    minimal["organisation"]["default_contact_preferences"] = {"send_service_reminders": False}
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["contact_preference_off"]
    assert (
        "unset, and the organisation's default for new contacts is off"
        in details(candidate)["contact_preference_off"]
    )
    minimal["organisation"]["default_contact_preferences"] = {}
    assert only(plan_of(db, minimal)).decision == "included"


def test_8_confirmations_need_both_preferences(db: Database, minimal: Doc) -> None:
    definition(minimal)["kind"] = "confirmation"
    minimal["documents"][0]["kind"] = "confirmation"
    address(minimal)["preferences"] = {"confirmations": False}
    contact(minimal)["preferences"] = {"email_confirmations_all_jobs": False}
    assert codes(only(plan_of(db, minimal))) == ["address_preference_off", "contact_preference_off"]


def test_9_cluster_not_targeted(db: Database, minimal: Doc) -> None:
    definition(minimal)["clusters"] = ["commercial", "strata"]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["cluster_not_targeted"]
    assert details(candidate)["cluster_not_targeted"] == (
        "customer C1 is in cluster 'residential'; the definition targets commercial, strata"
    )
    del customer(minimal)["cluster"]
    assert "has no cluster" in details(only(plan_of(db, minimal)))["cluster_not_targeted"]


def test_10_audience_mismatch_names_every_failing_clause(db: Database, minimal: Doc) -> None:
    customer(minimal)["attributes"] = {"photos_available": 1, "grade": "4b"}
    definition(minimal)["audience"] = [
        {"attribute": "photos_available", "equals": True},
        {"attribute": "grade", "in": ["4b", "5a"]},
        {"attribute": "school", "equals": "north"},
    ]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["audience_mismatch"]
    assert details(candidate)["audience_mismatch"] == (
        'photos_available equals true: it is 1; school equals "north": the customer has no '
        "such attribute"
    )


def test_10_audience_holds(db: Database, minimal: Doc) -> None:
    customer(minimal)["attributes"] = {"photos_available": True, "n": 2}
    definition(minimal)["audience"] = [
        {"attribute": "photos_available", "equals": True},
        {"attribute": "n", "in": [1, 2.0]},
    ]
    assert only(plan_of(db, minimal)).decision == "included"


def test_11_document_status_not_targeted(db: Database, minimal: Doc) -> None:
    minimal["documents"][0].update(status="concept", number=None)
    candidate = only(plan_of(db, minimal))
    assert (candidate.label, codes(candidate)) == ("Concept", ["document_status_not_targeted"])
    assert (
        "every status except concept and void" in details(candidate)["document_status_not_targeted"]
    )
    definition(minimal)["document_statuses"] = ["approved", "overdue"]
    assert details(only(plan_of(db, minimal)))["document_status_not_targeted"] == (
        "document D1 is concept; the definition targets approved, overdue"
    )


def test_12_service_status_not_allowed_by_default(db: Database, minimal: Doc) -> None:
    customer(minimal)["services"][0]["status"] = "cancelled"
    del minimal["billing_methods"][0]["send_rules"]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["service_status_not_allowed"]
    assert (
        "service S1 of document D1 is cancelled" in details(candidate)["service_status_not_allowed"]
    )


def test_12_the_billing_method_decides_when_it_lists_statuses(db: Database, minimal: Doc) -> None:
    customer(minimal)["services"][0]["status"] = "suspended"
    minimal["billing_methods"][0]["service_statuses_for_sending"] = ["active"]
    assert codes(only(plan_of(db, minimal))) == ["service_status_not_allowed"]
    customer(minimal)["services"][0]["status"] = "cancelled"
    minimal["billing_methods"][0]["service_statuses_for_sending"] = ["active", "cancelled"]
    assert only(plan_of(db, minimal)).decision == "included"


def test_13_service_email_not_allowed(db: Database, minimal: Doc) -> None:
    customer(minimal)["services"][0]["allow_billing_email"] = False
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["service_email_not_allowed"]
    assert details(candidate)["service_email_not_allowed"] == (
        "service S1 of document D1 does not allow billing email (allow_billing_email is false)"
    )


def test_13_only_for_invoice_kinds(db: Database, minimal: Doc) -> None:
    customer(minimal)["services"][0]["allow_billing_email"] = False
    definition(minimal)["kind"] = "job_sheet"
    minimal["documents"][0]["kind"] = "job_sheet"
    assert only(plan_of(db, minimal)).decision == "included"


def test_14_billing_method_has_no_rules(db: Database, minimal: Doc) -> None:
    definition(minimal)["use_billing_rules"] = True
    del minimal["billing_methods"][0]["send_rules"]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["billing_method_has_no_rules"]
    assert details(candidate)["billing_method_has_no_rules"] == (
        "billing method card (Card on file) of document D1 has no send rules"
    )


def test_14_a_document_without_billing_method(db: Database, minimal: Doc) -> None:
    definition(minimal)["use_billing_rules"] = True
    del minimal["documents"][0]["billing_method"]
    assert codes(only(plan_of(db, minimal))) == ["billing_method_has_no_rules"]


def test_15_billing_rule_not_due(db: Database, minimal: Doc) -> None:
    definition(minimal)["use_billing_rules"] = True
    minimal["documents"][0]["due_date"] = "2026-11-26"
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["billing_rule_not_due"]
    assert details(candidate)["billing_rule_not_due"] == (
        "document D1 is due 2026-11-26; on 2026-11-23 (UTC) that is offset -3 days, and "
        "Card on file sends at offsets 0 days"
    )


def test_15_a_document_without_due_date_is_never_due(db: Database, minimal: Doc) -> None:
    definition(minimal)["use_billing_rules"] = True
    del minimal["documents"][0]["due_date"]
    assert "has no due date" in details(only(plan_of(db, minimal)))["billing_rule_not_due"]


def test_15_offsets_count_in_the_organisation_timezone(db: Database, minimal: Doc) -> None:
    """At 2026-11-22T20:00Z it is already the 23rd in Sydney: the 0-day rule is due."""
    definition(minimal)["use_billing_rules"] = True
    minimal["organisation"]["timezone"] = "Australia/Sydney"
    at = "2026-11-22T20:00:00+00:00"
    assert only(plan_of(db, minimal, at=at)).decision == "included"
    minimal["organisation"]["timezone"] = "UTC"
    assert codes(only(plan_of(db, minimal, at=at))) == ["billing_rule_not_due"]


def test_16_already_sent(db: Database, minimal: Doc) -> None:
    definition(minimal)["dedup"] = "per_document"
    minimal["history"] = [
        {
            "definition": "inv",
            "customer": "C1",
            "address": "ANA@example.org",
            "document": "D1",
            "at": "2026-11-20T09:00:00+00:00",
        }
    ]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["already_sent"]
    assert details(candidate)["already_sent"] == (
        "this definition sent document D1 to ana@example.org on 2026-11-20T09:00:00+00:00"
    )


def test_16_other_documents_addresses_and_definitions_do_not_count(
    db: Database, minimal: Doc
) -> None:
    definition(minimal)["dedup"] = "per_document"
    minimal["definitions"].append({**definition(minimal), "id": "other"})
    minimal["documents"].append({**minimal["documents"][0], "id": "D2"})
    minimal["history"] = [
        {
            "definition": "inv",
            "customer": "C1",
            "address": "ana@example.org",
            "document": "D2",
            "at": "2026-11-20T09:00:00+00:00",
        },
        {
            "definition": "inv",
            "customer": "C1",
            "address": "bo@example.org",
            "document": "D1",
            "at": "2026-11-20T09:00:00+00:00",
        },
        {
            "definition": "other",
            "customer": "C1",
            "document": "D1",
            "at": "2026-11-20T09:00:00+00:00",
        },
    ]
    plan = plan_of(db, minimal)
    assert [(c.document, codes(c)) for c in plan.candidates] == [
        ("D1", []),
        ("D2", ["already_sent"]),
    ]


def test_16_an_entry_without_address_matches_every_address(db: Database, minimal: Doc) -> None:
    definition(minimal)["dedup"] = "per_document"
    minimal["history"] = [
        {"definition": "inv", "customer": "C1", "document": "D1", "at": "2026-11-20T09:00:00+00:00"}
    ]
    assert codes(only(plan_of(db, minimal))) == ["already_sent"]


def test_16_billing_rule_definitions_dedup_per_offset(db: Database, minimal: Doc) -> None:
    definition(minimal)["dedup"] = "per_document"
    definition(minimal)["use_billing_rules"] = True
    minimal["billing_methods"][0]["send_rules"] = [{"offset_days": -3}, {"offset_days": 0}]
    entry = {
        "definition": "inv",
        "customer": "C1",
        "document": "D1",
        "address": "ana@example.org",
        "at": "2026-11-20T09:00:00+00:00",
    }
    minimal["history"] = [{**entry, "offset_days": -3}]
    assert only(plan_of(db, minimal)).decision == "included"  # today is offset 0
    minimal["history"] = [{**entry, "offset_days": 0}]
    detail = details(only(plan_of(db, minimal)))["already_sent"]
    assert "at offset 0 days" in detail
    minimal["history"] = [entry]  # without offset_days: every offset
    assert codes(only(plan_of(db, minimal))) == ["already_sent"]


def test_17_already_targeted(db: Database, minimal: Doc) -> None:
    definition(minimal)["dedup"] = "per_trigger"
    minimal["history"] = [
        {"definition": "inv", "customer": "C1", "at": "2026-11-01T09:00:00+00:00"},
        {"definition": "inv", "customer": "C1", "at": "2026-11-10T09:00:00+00:00"},
    ]
    candidate = only(plan_of(db, minimal))
    assert codes(candidate) == ["already_targeted"]
    assert details(candidate)["already_targeted"] == (
        "this definition already targeted customer C1 on 2026-11-10T09:00:00+00:00 (2 times in all)"
    )


def test_dedup_none_ignores_history(db: Database, minimal: Doc) -> None:
    minimal["history"] = [
        {"definition": "inv", "customer": "C1", "document": "D1", "at": "2026-11-20T09:00:00+00:00"}
    ]
    assert only(plan_of(db, minimal)).decision == "included"


def test_every_failing_rule_is_listed_in_table_order(db: Database, minimal: Doc) -> None:
    minimal["organisation"].update(sender_verified=False, outbound={"auto_send_invoices": False})
    minimal["suppressions"] = [
        {"address": "ana@example.org", "reason": "hard_bounce", "since": "2026-01-01"}
    ]
    contact(minimal)["allow_email"] = False
    address(minimal)["preferences"] = {"invoices": False}
    customer(minimal)["services"][0].update(status="inactive", allow_billing_email=False)
    minimal["documents"][0].update(status="void", due_date="2026-12-01")
    definition(minimal).update(
        trigger={"type": "event", "event": "invoice_approved"},
        clusters=["commercial"],
        audience=[{"attribute": "vip", "equals": True}],
        use_billing_rules=True,
        dedup="per_document",
    )
    minimal["history"] = [
        {"definition": "inv", "customer": "C1", "document": "D1", "at": "2026-11-20T09:00:00+00:00"}
    ]
    assert codes(only(plan_of(db, minimal))) == [
        "sender_not_verified",
        "auto_send_disabled",
        "suppressed",
        "contact_email_not_allowed",
        "address_preference_off",
        "cluster_not_targeted",
        "audience_mismatch",
        "document_status_not_targeted",
        "service_status_not_allowed",
        "service_email_not_allowed",
        "billing_rule_not_due",
        "already_sent",
    ]


def test_run_level_reasons_are_on_every_candidate(db: Database, minimal: Doc) -> None:
    minimal["organisation"]["sender_verified"] = False
    minimal["customers"].append(
        {
            "id": "C2",
            "name": "Bo",
            "contacts": [
                {
                    "id": "C2-1",
                    "name": "Bo",
                    "allow_email": True,
                    "addresses": [{"address": "bo@example.org", "key": "billing"}],
                }
            ],
        }
    )
    minimal["documents"].append(
        {"id": "D2", "kind": "invoice", "status": "approved", "customer": "C2"}
    )
    plan = plan_of(db, minimal)
    assert len(plan.candidates) == 2
    assert all(codes(c)[0] == "sender_not_verified" for c in plan.candidates)


def test_several_addresses_under_one_key(db: Database, minimal: Doc) -> None:
    customer(minimal)["contacts"] = [
        {
            "id": "C1-2",
            "name": "Accounts",
            "allow_email": True,
            "addresses": [
                {"address": "zed@example.org", "key": "billing"},
                {"address": "ANA@example.org", "key": "billing"},
            ],
        },
        {
            "id": "C1-1",
            "name": "Ana",
            "allow_email": False,
            "addresses": [
                {"address": "ana@example.org", "key": "billing"},
                {"address": "ana@example.org", "key": "primary"},
            ],
        },
    ]
    minimal["documents"].append({**minimal["documents"][0], "id": "D0"})
    plan = plan_of(db, minimal)
    # Case variants count once: the first by contact id (C1-1), then address.
    assert [(c.address, c.contact, c.document, codes(c)) for c in plan.candidates] == [
        ("ana@example.org", "C1-1", "D0", ["contact_email_not_allowed"]),
        ("ana@example.org", "C1-1", "D1", ["contact_email_not_allowed"]),
        ("zed@example.org", "C1-2", "D0", []),
        ("zed@example.org", "C1-2", "D1", []),
    ]


def test_customers_without_documents_of_the_kind_yield_no_candidates(
    db: Database, minimal: Doc
) -> None:
    minimal["documents"][0]["kind"] = "quote"
    assert plan_of(db, minimal).candidates == []


def test_kinds_without_documents_yield_one_per_address(db: Database, minimal: Doc) -> None:
    definition(minimal)["kind"] = "broadcast"
    definition(minimal)["template"]["subject"] = "News"  # no document to name
    contact(minimal)["addresses"].append({"address": "ana2@example.org", "key": "billing"})
    minimal["customers"].append({"id": "C0", "name": "No addresses"})
    plan = plan_of(db, minimal)
    assert [(c.customer, c.address, c.document) for c in plan.candidates] == [
        ("C0", None, None),
        ("C1", "ana2@example.org", None),
        ("C1", "ana@example.org", None),
    ]


def test_warnings(db: Database, minimal: Doc) -> None:
    minimal["smtp_profiles"][0].update(username="u", password_env="SMTP_PASS")
    definition(minimal)["trigger"] = {"type": "routine", "cron": "0 9 * * *", "enabled": False}
    plan = plan_of(db, minimal, environ={})
    assert plan.warnings == [
        "the routine (0 9 * * *) is disabled: this definition never runs by itself",
        "SMTP profile main: the environment variable SMTP_PASS that holds its password is not "
        "set here",
        "SMTP profile main has never passed an SMTP test (msgrun smtp test main)",
        "1 candidate(s) of this definition have a document that lists no files: they are sent "
        "without attachments (template.attachments.document_files)",
    ]
    assert not any(
        "SMTP_PASS" in w for w in plan_of(db, minimal, environ={"SMTP_PASS": "x"}).warnings
    )
