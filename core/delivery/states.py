"""Run and recipient states (domain.md, "Runs and recipients")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Recipients.
PENDING: Final = "pending"
HELD: Final = "held"
SENDING: Final = "sending"
SENT: Final = "sent"
RETRYING: Final = "retrying"
FAILED: Final = "failed"
UNKNOWN: Final = "unknown"
EXCLUDED: Final = "excluded"
RECIPIENT_STATES: Final = (PENDING, HELD, SENDING, SENT, RETRYING, FAILED, UNKNOWN, EXCLUDED)

# Runs.
RUNNING: Final = "running"
STOPPING: Final = "stopping"
STOPPED: Final = "stopped"
WAITING: Final = "waiting"
COMPLETED: Final = "completed"
COMPLETED_WITH_FAILURES: Final = "completed_with_failures"
RUN_FAILED: Final = "failed"
RUN_STATES: Final = (
    RUNNING,
    STOPPING,
    STOPPED,
    WAITING,
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    RUN_FAILED,
)
# States a run can be restarted from (a completed run has nothing left).
RESTARTABLE: Final = (STOPPED, RUN_FAILED, WAITING, COMPLETED_WITH_FAILURES, RUNNING, STOPPING)
ENDED: Final = (STOPPED, COMPLETED, COMPLETED_WITH_FAILURES, RUN_FAILED)

# Retries: the profile's schedule, see retry_policy.py.

# Leases: renewed every few seconds; lapse at most 15 s after the holder dies.
LEASE_SECONDS: Final = 12.0
LEASE_RENEW_SECONDS: Final = 3.0
LEASE_ENV: Final = "MSGRUN_LEASE_SECONDS"


def lease_seconds(environ: Mapping[str, str]) -> float:
    """The lease length: MSGRUN_LEASE_SECONDS (1 to 15) or 12 s. Renewals come 4 times a lease."""
    raw = environ.get(LEASE_ENV)
    if not raw:
        return LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        return LEASE_SECONDS
    return min(15.0, max(1.0, value))
