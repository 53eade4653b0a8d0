"""The read models the console and the command line share: each answer computed in one place."""

from __future__ import annotations

from sqlalchemy import update

from core.run_info import get_run
from core.storage import Database
from core.storage.models import Recipient, table_of
from core.views.customers import find_customers
from core.views.deliveries import reply_words
from core.views.runs import (
    deliverable,
    done,
    recipient_detail,
    restart_check,
    run_window,
    runs_overview,
)
from tests.conftest import BLUE_LAGOON, load_ok, sample
from tests.delivery_support import document, new_run


def test_a_search_counts_every_match_and_lists_the_first_hundred(db: Database) -> None:
    load_ok(db, document(250, 2525))
    # An exact name would name one customer: a part of names finds them all.
    found = find_customers(db, "ustomer 1")  # Customer 1, 10-19, 100-199
    assert found.total == 111 and len(found.matches) == 100
    assert found.headline() == "111 customers match 'ustomer 1' — showing the first 100"
    assert [m.id for m in found.matches[:3]] == ["C00001", "C00010", "C00011"]


def test_customers_are_found_by_id_name_or_address_in_any_case(db: Database) -> None:
    load_ok(db, sample(BLUE_LAGOON))
    assert find_customers(db, "c015").unique is not None
    assert find_customers(db, "c015").matches[0].id == "C015"
    assert find_customers(db, "OLIVIA brown").matches[0].id == "C015"
    assert find_customers(db, "carla.mendes@example.NET").matches[0].id == "C003"
    # An id equal to the query wins over ids, names and addresses that contain it.
    assert find_customers(db, "C001").total == 1
    several = find_customers(db, "example.org")
    assert several.total > 1 and several.unique is None
    assert several.headline() == f"{several.total} customers match 'example.org'"
    nothing = find_customers(db, "C99")
    assert nothing.total == 0 and nothing.nearest[0] == "C009"
    assert "nearest ids: C009" in nothing.headline()
    # LIKE's wildcards are searched for as themselves.
    assert find_customers(db, "%").total == 0


def test_progress_and_can_restart_are_computed_once(db: Database) -> None:
    counts = {"pending": 2, "sent": 3, "failed": 1, "unknown": 1, "excluded": 5, "held": 0}
    assert (deliverable(counts), done(counts)) == (7, 5)
    assert restart_check(7, "completed").nothing_left
    assert "nothing to restart" in restart_check(7, "completed").why
    assert restart_check(7, "stopped").allowed
    run_id = new_run(db, document(3, 2525))
    overview = runs_overview(db)
    assert overview.definitions == 1 and overview.running == 1
    assert overview.runs[0].id == run_id
    assert (overview.runs[0].deliverable, overview.runs[0].done) == (3, 0)


def test_the_last_window_of_a_run_and_a_recipient_in_full(db: Database) -> None:
    run_id = new_run(db, document(120, 2525))
    recipient = table_of(Recipient)
    with db.connect() as connection:
        connection.execute(
            update(recipient)
            .where(recipient.c.run_id == run_id, recipient.c.position == 119)
            .values(
                state="failed",
                smtp_code=553,
                smtp_reply="msgrun: the address needs SMTPUTF8, which the server does not offer",
                attempts=1,
            )
        )
    last = run_window(db, run_id, offset=0, limit=50, last=True)
    assert last.offset == 70 and last.rows[-1].position == 119 and last.matching == 120
    searched = run_window(db, run_id, search="p11", limit=5, last=True)
    assert searched.matching == 11 and searched.rows[-1].position == 119
    failed = run_window(db, run_id, states=["failed"], limit=50, last=True)
    assert [r.position for r in failed.rows] == [119]
    detail = recipient_detail(db, run_id, 119)
    assert detail.by_msgrun and detail.attempts == 1
    assert detail.reply == "msgrun: the address needs SMTPUTF8, which the server does not offer"
    assert get_run(db, run_id).counts["failed"] == 0  # counters untouched by this test's update


def test_a_reply_is_the_servers_with_its_code_and_msgrun_s_own_without() -> None:
    assert reply_words(550, "5.1.1 no such mailbox") == "550 5.1.1 no such mailbox"
    assert reply_words(553, "msgrun: the address needs SMTPUTF8") == (
        "msgrun: the address needs SMTPUTF8"
    )
    assert reply_words(None, None, "connection refused") == "connection refused"
