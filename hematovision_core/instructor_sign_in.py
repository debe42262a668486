"""The instructor page's password guard, with its server-wide count in the answers database.

`login_guard` counts wrong passwords per browser session and server-wide. A browser session
lives in one process, so its count can stay in memory. The server-wide count cannot: README's
command runs one replica per core and compose runs a container per replica, and counted in each
process's memory, N replicas let a guesser who opens a new session per guess try N x 50
passwords per window instead of 50. Here every replica writes its failures to the database they
share and reads the lock from there.

The database is read only on a sign-in try and written only on a wrong one: a signed-in page's
reruns never reach it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from hematovision_core.database import transaction
from hematovision_core.login_guard import GuardPolicy, LoginGuard
from hematovision_core.schema import sign_in_failures as failures
from hematovision_core.schema import sign_in_locks as locks

_GUARDS: dict[str, LoginGuard] = {}  # database -> this process's guard
_GUARDS_LOCK = threading.Lock()


class DatabaseCount:
    """`login_guard.ServerCount` in the database: every replica's failures and locks.

    Raises StorageError when the database cannot be used; the page shows its message and lets
    nobody in (a guard that cannot count does not wave guesses through).
    """

    def __init__(self, database: str | Path):
        self.database = database

    def locked_until(self) -> float:
        return transaction(self.database, lambda connection: connection.execute(
            sa.select(sa.func.max(locks.c.locked_until))).scalar()) or 0.0

    def count_failure(self, now: float, policy: GuardPolicy) -> tuple[int, float]:
        def work(connection: sa.Connection) -> tuple[int, float]:
            # Old rows go first: the tables stay as small as one window of guessing.
            connection.execute(sa.delete(failures).where(
                failures.c.failed_at <= now - policy.server_window))
            connection.execute(sa.delete(locks).where(locks.c.locked_until <= now))
            connection.execute(sa.insert(failures).values(failed_at=now))
            counted = connection.execute(sa.select(sa.func.count()).select_from(failures)).scalar()
            if counted < policy.server_failures:
                return counted, 0.0
            connection.execute(sa.delete(failures))  # a lock starts a new count
            until = now + policy.server_lockout
            connection.execute(sa.insert(locks).values(locked_until=until))
            return counted, until

        return transaction(self.database, work, write=True)


def instructor_guard(database: str | Path) -> LoginGuard:
    """This process's guard for the instructor page of `database`, made on first use."""
    key = str(database)
    with _GUARDS_LOCK:
        if key not in _GUARDS:
            _GUARDS[key] = LoginGuard(server=DatabaseCount(database))
        return _GUARDS[key]
