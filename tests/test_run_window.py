"""The window of recipients the console pages through: the same rows however it is read."""

from __future__ import annotations

from sqlalchemy import update

from core.run_info import get_run
from core.storage import Database
from core.storage.models import Recipient, table_of
from core.views.recipients import recipient_page
from tests.delivery_support import document, new_run


def positions(views: list) -> list[int]:  # type: ignore[type-arg]
    return [v.position for v in views]


def test_windows_by_position_filter_and_search_agree(db: Database) -> None:
    run_id = new_run(db, document(120, 2525))
    recipient = table_of(Recipient)
    with db.connect() as connection:  # every third recipient has failed
        connection.execute(
            update(recipient)
            .where(recipient.c.run_id == run_id, recipient.c.position % 3 == 0)
            .values(state="failed")
        )
    run = get_run(db, run_id)
    rows, total = recipient_page(db, run_id, offset=50, limit=50)
    assert positions(rows) == list(range(50, 100)) and total == 120
    # Told how many match, the window is the same and no count is made.
    same, told = recipient_page(db, run_id, offset=50, limit=50, matching=run.total)
    assert positions(same) == positions(rows) and told == run.total
    last, _ = recipient_page(db, run_id, offset=100, limit=50)
    assert positions(last) == list(range(100, 120))
    failed, matching = recipient_page(db, run_id, states=["failed"], offset=10, limit=5)
    assert matching == 40 and positions(failed) == [30, 33, 36, 39, 42]
    found, matching = recipient_page(db, run_id, search="p11", limit=50)
    assert matching == 11 and positions(found)[:2] == [11, 110]
