"""login_guard: growing delay, session lockout and server-wide lockout, on a fake clock."""

from __future__ import annotations

import logging
import threading

from hematovision_core.login_guard import (GuardPolicy, LoginGuard, describe_wait,
                                           refusal_message)

SECRET = "right-password"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def guard_with_clock(**policy) -> tuple[LoginGuard, FakeClock]:
    clock = FakeClock()
    return LoginGuard(GuardPolicy(**policy), clock=clock), clock


def fail(guard: LoginGuard, clock: FakeClock, session: str, count: int, start: int = 0):
    """`count` distinct wrong passwords, each tried as soon as the guard allows."""
    verdicts = []
    for number in range(start, start + count):
        clock.advance(guard.wait_seconds(session))
        verdicts.append(guard.attempt(session, f"guess-{number}", SECRET))
    return verdicts


def test_delay_doubles_after_the_free_failures_then_the_session_locks():
    guard, clock = guard_with_clock()
    verdicts = fail(guard, clock, "s1", 10)
    assert all(not v.allowed and v.counted for v in verdicts)
    assert [v.wait_seconds for v in verdicts[:9]] == [0, 0, 0, 1, 2, 4, 8, 16, 32]
    assert verdicts[9].reason == "session-locked" and verdicts[9].wait_seconds == 300
    # Even the right password is refused during the lockout, and a refused try is not counted.
    clock.advance(299)
    refused = guard.attempt("s1", SECRET, SECRET)
    assert not refused.allowed and refused.locked and not refused.counted
    assert refused.wait_seconds == 1
    clock.advance(1)
    assert guard.attempt("s1", SECRET, SECRET).allowed
    # Another session was never slowed down.
    assert guard.wait_seconds("s2") == 0 and guard.attempt("s2", SECRET, SECRET).allowed


def test_a_try_during_the_delay_is_refused_and_the_same_wrong_password_counts_once():
    guard, clock = guard_with_clock()
    fail(guard, clock, "s1", 4)  # 4th failure: 1 s delay
    early = guard.attempt("s1", "another", SECRET)
    assert early.reason == "delay" and not early.counted and early.wait_seconds == 1
    clock.advance(1)
    first = guard.attempt("s1", "same-wrong", SECRET)
    assert first.counted and first.wait_seconds == 2
    clock.advance(2)
    again = guard.attempt("s1", "same-wrong", SECRET)  # a rerun with the box unchanged
    assert not again.allowed and not again.counted and again.wait_seconds == 0


def test_many_sessions_lock_the_server_but_not_a_session_already_signed_in():
    guard, clock = guard_with_clock(server_failures=50, server_window=600, server_lockout=600)
    assert guard.attempt("instructor", SECRET, SECRET).allowed
    verdicts = [guard.attempt(f"bot-{n}", "guess", SECRET) for n in range(50)]
    assert all(v.reason == "wrong" for v in verdicts[:49])
    assert verdicts[49].reason == "server-locked" and verdicts[49].wait_seconds == 600
    locked = guard.attempt("newcomer", SECRET, SECRET)
    assert not locked.allowed and locked.reason == "server-locked"
    assert guard.attempt("instructor", SECRET, SECRET).allowed  # signed in before: unaffected
    clock.advance(600)
    assert guard.attempt("newcomer", SECRET, SECRET).allowed


def test_failures_older_than_the_window_do_not_lock_the_server():
    guard, clock = guard_with_clock(server_failures=5, server_window=60)
    for n in range(4):
        guard.attempt(f"s{n}", "guess", SECRET)
    clock.advance(61)
    assert guard.attempt("s9", "guess", SECRET).reason == "wrong"
    assert guard.wait_seconds("s10") == 0


def test_failures_are_logged_without_the_password(caplog):
    guard, clock = guard_with_clock(lockout_after=2)
    with caplog.at_level(logging.WARNING, logger="hematovision_core.login_guard"):
        guard.attempt("session-abcdefgh-1234", "hunter2-typed", SECRET, client="10.0.0.7")
        guard.attempt("session-abcdefgh-1234", "hunter3-typed", SECRET, client="10.0.0.7")
    text = caplog.text
    assert "Wrong instructor password" in text and "10.0.0.7" in text and "locked" in text
    assert "hunter" not in text and SECRET not in text


def test_the_guard_counts_every_failure_from_many_threads():
    guard, clock = guard_with_clock(server_failures=10_000, lockout_after=10_000)
    barrier = threading.Barrier(16)

    def guess(thread: int) -> None:
        barrier.wait()
        for n in range(50):
            guard.attempt(f"t{thread}", f"g{n}", SECRET)

    threads = [threading.Thread(target=guess, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # each session: 50 failures counted with no time passing: only the first 4 got through
    assert all(guard._sessions[f"t{t}"].failures == 4 for t in range(16))


def test_idle_sessions_are_forgotten():
    guard, clock = guard_with_clock(forget_after=100)
    guard.attempt("old", "guess", SECRET)
    clock.advance(101)
    guard.attempt("new", "guess", SECRET)
    assert set(guard._sessions) == {"new"}


def test_messages_name_the_wait():
    assert describe_wait(0.2) == "1 s" and describe_wait(299.5) == "5 min"
    assert describe_wait(61) == "1 min 1 s"
    guard, clock = guard_with_clock()
    verdict = fail(guard, clock, "s", 10)[-1]
    assert refusal_message(verdict) == "Too many wrong passwords: sign-in is locked for 5 min."


# --- the server-wide count in the database (instructor_sign_in), shared by replicas ---------------


def replicas(database_url: str, count: int, clock: FakeClock, **policy) -> list[LoginGuard]:
    """`count` guards on one database, as README's command's replicas (one process each) are."""
    from hematovision_core.instructor_sign_in import DatabaseCount

    return [LoginGuard(GuardPolicy(**policy), clock=clock, server=DatabaseCount(database_url))
            for _ in range(count)]


def test_replicas_sharing_the_database_lock_at_the_same_count_as_one_process(database_url):
    clock = FakeClock()
    first, second = replicas(database_url, 2, clock, server_failures=50, server_window=600,
                             server_lockout=600)
    assert first.attempt("instructor", SECRET, SECRET).allowed
    # A guesser with a new session per guess, spread over both replicas by the load balancer.
    verdicts = [(first if n % 2 else second).attempt(f"bot-{n}", "guess", SECRET)
                for n in range(50)]
    assert all(v.reason == "wrong" for v in verdicts[:49])
    assert verdicts[49].reason == "server-locked" and verdicts[49].wait_seconds == 600
    for replica in (first, second):
        refused = replica.attempt("newcomer", SECRET, SECRET)
        assert not refused.allowed and refused.reason == "server-locked"
        assert replica.wait_seconds("newcomer") == 600
    assert first.attempt("instructor", SECRET, SECRET).allowed  # signed in before: unaffected
    clock.advance(600)
    assert second.attempt("newcomer", SECRET, SECRET).allowed
    # Counted in each process's memory, the same 50 guesses locked nothing.
    clock.advance(600)
    in_memory = [LoginGuard(GuardPolicy(server_failures=50), clock=clock) for _ in range(2)]
    assert not any(in_memory[n % 2].attempt(f"bot-{n}", "guess", SECRET).locked
                   for n in range(50))


def test_the_database_count_forgets_failures_older_than_the_window(database_url):
    import sqlalchemy as sa

    from hematovision_core import database
    from hematovision_core.schema import sign_in_failures, sign_in_locks

    clock = FakeClock()
    first, second = replicas(database_url, 2, clock, server_failures=5, server_window=60,
                             server_lockout=30)
    for n in range(4):
        first.attempt(f"s{n}", "guess", SECRET)
    clock.advance(61)
    assert second.attempt("s9", "guess", SECRET).reason == "wrong"
    assert second.wait_seconds("s10") == 0
    rows = lambda table: database.transaction(database_url, lambda c: c.execute(  # noqa: E731
        sa.select(sa.func.count()).select_from(table)).scalar())
    assert rows(sign_in_failures) == 1  # the four old ones are gone
    for n in range(4):
        second.attempt(f"t{n}", "guess", SECRET)
    assert rows(sign_in_failures) == 0 and rows(sign_in_locks) == 1  # locked: a new count
    clock.advance(30)
    assert first.attempt("t9", "guess", SECRET).reason == "wrong"
    assert rows(sign_in_locks) == 0  # an ended lock is dropped
