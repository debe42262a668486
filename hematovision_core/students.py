"""Kept nicknames: a student who wants Review mode keeps a nickname, optionally behind a PIN.

No personal data is asked: the nickname is any name (as in a quiz), and the PIN, if chosen, only
stops another student from opening someone else's review cards. The PIN is never stored: only a
salted scrypt hash (a fresh random salt per student, the cost parameters kept with the hash, so
they can be raised later), compared in constant time.

Wrong PINs are counted in the database, per nickname, so every replica sees the same count: the
first `free_failures` are typos; after that each wrong PIN locks the nickname for `first_lock`
seconds, doubling up to `max_lock`. A lock refuses before hashing, so guessing costs the server
no scrypt work. With the defaults a 4-digit PIN takes years to guess; the price is that a guesser
can keep a student from signing in for up to an hour (their cards wait, nothing is lost).

A nickname kept without a PIN is open to anyone who types it, and stays so: a PIN cannot be added
later by whoever types the nickname next (that would let anyone lock the owner out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from hematovision_core.database import StorageError, transaction
from hematovision_core.login_guard import describe_wait
from hematovision_core.quiz import normalize_nickname
from hematovision_core.review import iso
from hematovision_core.schema import students as table

PIN_MIN, PIN_MAX = 4, 32  # characters
# scrypt cost: n=2**14, r=8 uses 16 MiB and about 50 ms a hash on this project's CPU.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32


@dataclass(frozen=True)
class PinPolicy:
    free_failures: int = 3  # wrong PINs (since the last right one) that cost nothing
    first_lock: float = 30.0  # seconds the nickname is locked after the next wrong one; doubles
    max_lock: float = 3600.0  # ... up to an hour


@dataclass(frozen=True)
class Student:
    id: int
    nickname: str  # as first kept
    has_pin: bool
    created: bool = False  # True when this sign-in kept the nickname for the first time


class SignInError(ValueError):
    """The nickname or PIN cannot be used; the message is meant for the student."""


# ---- names and PINs -----------------------------------------------------------------------------


def nickname_key(nickname: str) -> str:
    """The form that identifies a kept nickname: "Ana", "ana " and "ＡＮＡ" are one student."""
    return unicodedata.normalize("NFKC", normalize_nickname(nickname)).casefold()


def normalize_pin(text: str | None) -> str | None:
    """A typed PIN, or None when left empty; SignInError if it cannot be one."""
    if text is None or text == "":
        return None
    if not PIN_MIN <= len(text) <= PIN_MAX:
        raise SignInError(f"A PIN is {PIN_MIN} to {PIN_MAX} characters (or leave it empty).")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise SignInError("A PIN holds letters, digits and punctuation only, "
                          "no control characters.")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """"scrypt$n$r$p$salt$hash" of a PIN, with a fresh random salt unless one is given."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def pin_matches(pin: str, stored: str) -> bool:
    """Whether `pin` hashes to `stored` (constant-time; False for a malformed record)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        typed = hashlib.scrypt(pin.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                               p=int(p), dklen=len(expected), maxmem=2 ** 26)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(typed, expected)


def lock_seconds(failures: int, policy: PinPolicy) -> float:
    """How long the nickname is locked after its `failures`-th wrong PIN in a row (0: not)."""
    if failures <= policy.free_failures:
        return 0.0
    return min(policy.first_lock * 2 ** (failures - policy.free_failures - 1), policy.max_lock)


# ---- sign-in ------------------------------------------------------------------------------------


def _find(database: str | Path, key: str) -> sa.Row | None:
    query = sa.select(table).where(table.c.nickname_key == key)
    return transaction(database, lambda connection: connection.execute(query).one_or_none())


def _create(database: str | Path, key: str, nickname: str, pin: str | None, now: datetime) -> bool:
    """Keep a new nickname; False if another session kept it first (a race)."""
    pin_hash = hash_pin(pin) if pin else None  # hashed outside the transaction: no lock held

    def insert(connection: sa.Connection) -> bool:
        if connection.execute(sa.select(table.c.id).where(table.c.nickname_key == key)).first():
            return False
        connection.execute(sa.insert(table).values(nickname_key=key, nickname=nickname,
                                                   pin_hash=pin_hash, created_at=iso(now)))
        return True

    try:
        return transaction(database, insert, write=True)
    except StorageError as error:  # PostgreSQL: the other insert won between SELECT and INSERT
        if isinstance(error.__cause__, sa.exc.IntegrityError):
            return False
        raise


def _count_failure(database: str | Path, student_id: int, now: datetime,
                   policy: PinPolicy) -> float:
    """Add a wrong PIN to the nickname's count (atomically) and lock it if due; returns the lock."""
    def count(connection: sa.Connection) -> float:
        connection.execute(sa.update(table).where(table.c.id == student_id)
                           .values(failed_pins=table.c.failed_pins + 1))
        failures = connection.execute(sa.select(table.c.failed_pins)
                                      .where(table.c.id == student_id)).scalar_one()
        seconds = lock_seconds(failures, policy)
        if seconds:
            connection.execute(sa.update(table).where(table.c.id == student_id)
                               .values(locked_until=iso(now + timedelta(seconds=seconds))))
        return seconds

    return transaction(database, count, write=True)


def _clear_failures(database: str | Path, student_id: int) -> None:
    transaction(database, lambda connection: connection.execute(
        sa.update(table).where(table.c.id == student_id)
        .values(failed_pins=0, locked_until=None)), write=True)


def sign_in(database: str | Path, nickname: str, pin: str | None, now: datetime,
            policy: PinPolicy = PinPolicy()) -> Student:
    """The student behind a kept nickname, keeping it now if it is new (SignInError if refused).

    Raises SignInError (a message for the student) for an unusable nickname or PIN, a wrong PIN,
    a locked nickname, or a PIN typed for a nickname kept without one; StorageError when the
    database cannot be used.
    """
    try:
        key, shown = nickname_key(nickname), normalize_nickname(nickname)
    except ValueError as error:
        raise SignInError(str(error)) from None
    pin = normalize_pin(pin)
    for _ in range(2):  # a second look if another session kept the same nickname meanwhile
        row = _find(database, key)
        if row is None:
            if _create(database, key, shown, pin, now):
                return Student(_find(database, key).id, shown, pin is not None, created=True)
            continue
        return _check_pin(database, row, pin, now, policy)
    raise SignInError("This nickname is being kept by someone else right now; try again.")


def _check_pin(database: str | Path, row: sa.Row, pin: str | None, now: datetime,
               policy: PinPolicy) -> Student:
    """The student of an existing nickname if the PIN fits it (SignInError if not)."""
    if row.pin_hash is None:
        if pin is not None:
            raise SignInError("This nickname is kept without a PIN: leave the PIN empty, or "
                              "choose another nickname to keep with a PIN.")
        return Student(row.id, row.nickname, False)
    if row.locked_until and datetime.fromisoformat(row.locked_until) > now:
        wait = (datetime.fromisoformat(row.locked_until) - now).total_seconds()
        raise SignInError(f"Too many wrong PINs for this nickname: wait {describe_wait(wait)}.")
    if pin is None:
        raise SignInError("This nickname is kept with a PIN: type it to open your review cards.")
    if not pin_matches(pin, row.pin_hash):
        locked = _count_failure(database, row.id, now, policy)
        wait = f" Wait {describe_wait(locked)} before the next try." if locked else ""
        raise SignInError("Wrong PIN for this nickname." + wait)
    if row.failed_pins:
        _clear_failures(database, row.id)
    return Student(row.id, row.nickname, True)
