"""Slow down password guessing on the instructor page: a growing delay, then a lockout.

Without this a script guesses the instructor password about 11 times a second. The guard counts
wrong passwords per browser session and across the whole server:

- per session: the first `free_failures` (typos) cost nothing; then each wrong password makes the
  session wait `first_delay` seconds, doubling (1, 2, 4 ... up to `max_delay`); after
  `lockout_after` wrong passwords the session is locked for `lockout_seconds`.
- server-wide: a guesser can open a new session per guess, so `server_failures` wrong passwords
  within `server_window` seconds, from any sessions, lock every sign-in for `server_lockout`.
  With the defaults that is at most 50 guesses per 20 minutes (about 3,600 a day), hopeless
  against a password of 10 random characters. The price is that a determined guesser can keep the
  instructor from *signing in*; a session that already signed in stays signed in. The count is a
  `ServerCount`: in this process's memory (`MemoryCount`), or in the database every replica
  shares (`instructor_sign_in.DatabaseCount`, what the app uses), so N replicas lock at the same
  50 as one.

Refused tries (during a wait) do not count, and neither does the same wrong password seen again
(Streamlit reruns the page on every click, with the typed value still in the box). Nothing
here sleeps: a try during a wait is refused at once with the seconds left, so guessing holds no
server thread. Failures are logged (session, counts, client address if known), never the password.
The clock (wall-clock seconds: a database count is compared across processes) is injectable so
tests need not wait; one lock makes the guard safe across Streamlit's session threads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardPolicy:
    free_failures: int = 3  # wrong passwords per session before any delay (typos happen)
    first_delay: float = 1.0  # seconds after the first counted failure; doubles each time
    max_delay: float = 60.0  # the delay never grows past this
    lockout_after: int = 10  # wrong passwords per session that lock it
    lockout_seconds: float = 300.0  # how long a session lockout lasts (5 min)
    server_failures: int = 50  # wrong passwords from all sessions within server_window ...
    server_window: float = 600.0  # ... (10 min) that lock sign-in for everyone
    server_lockout: float = 600.0  # for this long (10 min)
    forget_after: float = 3600.0  # a session idle this long is forgotten (bounded memory)


@dataclass(frozen=True)
class Verdict:
    allowed: bool  # True: the password is right and the session may go on
    wait_seconds: float = 0.0  # > 0: how long until the next try is looked at
    reason: str = ""  # "wrong", "delay", "session-locked", "server-locked" or "" when allowed
    counted: bool = False  # this try was counted as a new failure

    @property
    def locked(self) -> bool:
        return self.reason in ("session-locked", "server-locked")


@dataclass
class _Session:
    failures: int = 0
    next_try_at: float = 0.0
    locked: bool = False  # the wait is a lockout, not a delay
    last_failed: bytes = b""  # keyed digest of the last wrong password (not the password)
    signed_in: bool = False
    last_seen: float = 0.0


class ServerCount(Protocol):
    """The server-wide count of wrong passwords and the lock it sets (the guard holds its lock
    around every call)."""

    def locked_until(self) -> float:
        """When the server-wide lock ends (clock seconds); 0 or the past when there is none."""

    def count_failure(self, now: float, policy: GuardPolicy) -> tuple[int, float]:
        """Count one failure at `now`; returns (failures within the window, the lock's end if this
        failure locked the server, else 0). A lock starts a new count."""


class MemoryCount:
    """The server-wide count in this process's memory: right for one process (and tests)."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque()  # times of failures within server_window
        self._locked_until = 0.0

    def locked_until(self) -> float:
        return self._locked_until

    def count_failure(self, now: float, policy: GuardPolicy) -> tuple[int, float]:
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - policy.server_window:
            recent.popleft()
        if len(recent) < policy.server_failures:
            return len(recent), 0.0
        counted = len(recent)
        recent.clear()
        self._locked_until = now + policy.server_lockout
        return counted, self._locked_until


class LoginGuard:
    """Counts wrong passwords per session and server-wide and says when a try is allowed."""

    def __init__(self, policy: GuardPolicy | None = None,
                 clock: Callable[[], float] = time.time, server: ServerCount | None = None):
        self.policy = policy or GuardPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._server = server or MemoryCount()
        self._key = secrets.token_bytes(32)  # per process: digests of wrong tries mean nothing

    def attempt(self, session_id: str, typed: str, expected: str,
                client: str | None = None) -> Verdict:
        """Judge one try of `typed` against `expected` for `session_id`; count it if wrong."""
        now = self._clock()
        with self._lock:
            self._forget_idle(now)
            session = self._sessions.setdefault(session_id, _Session())
            session.last_seen = now
            right = hmac.compare_digest(typed.encode(), expected.encode())
            if right and session.signed_in:
                return Verdict(True)  # a rerun of a signed-in page: no lock applies
            server_locked_until = self._server.locked_until()
            if now < server_locked_until:
                return Verdict(False, server_locked_until - now, "server-locked")
            if now < session.next_try_at:
                reason = "session-locked" if session.locked else "delay"
                return Verdict(False, session.next_try_at - now, reason)
            if right:
                session.failures, session.locked, session.signed_in = 0, False, True
                session.last_failed = b""
                return Verdict(True)
            session.signed_in = False
            digest = hmac.new(self._key, typed.encode(), hashlib.sha256).digest()
            if digest == session.last_failed:
                return Verdict(False, 0.0, "wrong")  # the same wrong password, seen again
            session.last_failed = digest
            return self._count_failure(session_id, session, now, client)

    def wait_seconds(self, session_id: str) -> float:
        """Seconds before `session_id` may try again (0 when it may try now)."""
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            session_wait = session.next_try_at - now if session else 0.0
            return max(0.0, session_wait, self._server.locked_until() - now)

    def _count_failure(self, session_id: str, session: _Session, now: float,
                       client: str | None) -> Verdict:
        policy = self.policy
        session.failures += 1
        on_server, server_locked_until = self._server.count_failure(now, policy)
        who = f"session {session_id[:8]}" + (f" from {client}" if client else "")
        log.warning("Wrong instructor password (%s): %d in this session, %d on the server in "
                    "the last %.0f s", who, session.failures, on_server, policy.server_window)
        if server_locked_until:
            log.error("Instructor sign-in locked for everyone for %.0f s after %d wrong "
                      "passwords in %.0f s", server_locked_until - now, on_server,
                      policy.server_window)
            return Verdict(False, server_locked_until - now, "server-locked", counted=True)
        if session.failures >= policy.lockout_after:
            session.next_try_at, session.locked = now + policy.lockout_seconds, True
            log.error("Instructor sign-in locked for %s for %.0f s after %d wrong passwords",
                      who, policy.lockout_seconds, session.failures)
            return Verdict(False, policy.lockout_seconds, "session-locked", counted=True)
        if session.failures > policy.free_failures:
            delay = min(policy.first_delay * 2 ** (session.failures - policy.free_failures - 1),
                        policy.max_delay)
            session.next_try_at, session.locked = now + delay, False
            return Verdict(False, delay, "wrong", counted=True)
        return Verdict(False, 0.0, "wrong", counted=True)

    def _forget_idle(self, now: float) -> None:
        """Drop sessions idle past `forget_after` whose wait is over (caller holds the lock)."""
        horizon = now - self.policy.forget_after
        for session_id in [s for s, state in self._sessions.items()
                           if state.last_seen < horizon and state.next_try_at <= now]:
            del self._sessions[session_id]


def describe_wait(seconds: float) -> str:
    """'8 s', '4 min 59 s': a wait as a person reads it (rounded up to whole seconds)."""
    whole = max(1, int(-(-seconds // 1)))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def refusal_message(verdict: Verdict) -> str:
    """The sentence the sign-in form shows for a refused try."""
    wait = describe_wait(verdict.wait_seconds) if verdict.wait_seconds > 0 else ""
    if verdict.reason == "server-locked":
        return (f"Too many wrong passwords on this server: instructor sign-in is locked for "
                f"everyone for {wait}. Pages already signed in keep working.")
    if verdict.reason == "session-locked":
        return f"Too many wrong passwords: sign-in is locked for {wait}."
    if verdict.reason == "delay":
        return f"Too many wrong passwords: wait {wait} before the next try."
    return f"Wrong password. Wait {wait} before the next try." if wait else "Wrong password."
