"""session_reaper: closed tabs' sessions are shut down once Streamlit's reconnect time is over."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from streamlit.runtime.memory_session_storage import MemorySessionStorage
from streamlit.runtime.session_manager import SessionInfo

from session_reaper import install, shut_down_expired_sessions


class FakeSession:
    """What the reaper touches of an AppSession: its id, loop and shutdown."""

    def __init__(self, session_id: str, loop=None):
        self.id = session_id
        self._event_loop = loop
        self.shut_down = threading.Event()

    def shutdown(self) -> None:
        self.shut_down.set()


def manager_with(storage: MemorySessionStorage):
    """Streamlit's session manager as the reaper sees it: its storage and the storage's lock."""
    return SimpleNamespace(_session_storage=storage, _storage_lock=threading.Lock())


def test_expired_sessions_are_shut_down_without_waiting_for_another_closed_tab():
    storage = MemorySessionStorage(maxsize=128, ttl_seconds=0.2)
    old, recent = FakeSession("old"), FakeSession("recent")
    storage.save(SessionInfo(client=None, session=old, script_run_count=1))
    storage.save(SessionInfo(client=None, session=recent, script_run_count=1))
    time.sleep(0.25)
    assert len(storage._cache._data) == 2  # Streamlit's cache still holds both, expired
    assert shut_down_expired_sessions(manager_with(storage)) == 2
    assert old.shut_down.is_set() and recent.shut_down.is_set()
    assert storage.list() == [] and not storage._cache._data
    assert shut_down_expired_sessions(manager_with(storage)) == 0  # nothing twice


def test_the_expiry_streamlit_runs_when_storing_a_session_shuts_the_expired_down_too():
    storage = MemorySessionStorage(maxsize=128, ttl_seconds=0.2)
    assert install(manager_with(storage))
    old = FakeSession("old")
    storage.save(SessionInfo(client=None, session=old, script_run_count=1))
    time.sleep(0.3)
    recent = FakeSession("recent")
    storage.save(SessionInfo(client=None, session=recent, script_run_count=1))  # expires "old"
    assert old.shut_down.is_set() and not recent.shut_down.is_set()
    assert storage.get("recent") is not None and len(storage.list()) == 1


def test_a_full_cache_shuts_down_the_session_it_drops_for_a_new_one():
    storage = MemorySessionStorage(maxsize=2, ttl_seconds=60)
    assert install(manager_with(storage))
    sessions = [FakeSession(f"tab-{n}") for n in range(3)]
    for session in sessions:
        storage.save(SessionInfo(client=None, session=session, script_run_count=1))
    assert [s.shut_down.is_set() for s in sessions] == [True, False, False]
    assert {info.session.id for info in storage.list()} == {"tab-1", "tab-2"}


def test_a_session_still_within_its_reconnect_time_is_kept_and_can_come_back():
    storage = MemorySessionStorage(maxsize=128, ttl_seconds=60)
    waiting = FakeSession("waiting")
    storage.save(SessionInfo(client=None, session=waiting, script_run_count=1))
    assert shut_down_expired_sessions(manager_with(storage)) == 0
    assert not waiting.shut_down.is_set()
    storage.delete("waiting")  # the tab reconnects: Streamlit takes it out of storage
    assert not waiting.shut_down.is_set()


def test_shutdown_runs_on_the_sessions_event_loop():
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        storage = MemorySessionStorage(maxsize=128, ttl_seconds=0.05)
        session = FakeSession("on-loop", loop)
        storage.save(SessionInfo(client=None, session=session, script_run_count=0))
        time.sleep(0.1)
        loop.call_soon_threadsafe(time.sleep, 0.3)  # the loop is busy: the shutdown queues
        assert shut_down_expired_sessions(manager_with(storage)) == 1
        # Returned only once the loop ran it, so the janitor's trim that follows frees it.
        assert session.shut_down.is_set()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


def test_a_manager_without_that_storage_is_left_alone():
    assert shut_down_expired_sessions(SimpleNamespace()) == 0
    assert not install(SimpleNamespace(_session_storage=SimpleNamespace(_cache={})))
    assert shut_down_expired_sessions(None) == 0  # no server running in this process
