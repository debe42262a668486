"""Shut down the sessions of closed browser tabs once Streamlit stops waiting for them to return.

Streamlit keeps a closed tab's session for `server.disconnectedSessionTTL` seconds (2 minutes), so
a student whose Wi-Fi drops gets their quiz back. It keeps them in a TTL cache that removes an
expired entry only when the cache is next written to, and it never shuts the removed session down
(streamlit/streamlit#12506); nor does it shut down the sessions it drops when it holds 128 and
another tab closes. After a lecture the students' sessions (their quiz, their classified uploads,
their media files) stayed in memory, 60 to 110 MiB on this server. `serve.py`'s janitor calls `shut_down_expired_sessions` once a minute: it makes the cache shut
down whatever it expires (`install`), then expires what is due.

This reaches into Streamlit's session manager (`_session_storage._cache.expire`, `_storage_lock`,
the session's `_event_loop`): every attribute is looked up defensively, so on a Streamlit that stores sessions
differently this does nothing rather than fail.
"""

from __future__ import annotations

import contextlib
import logging
import threading

log = logging.getLogger(__name__)


def session_manager():
    """The running Streamlit server's session manager, or None outside a server."""
    from streamlit import runtime

    return getattr(runtime.get_instance(), "_session_mgr", None) if runtime.exists() else None


def _shut_down(info) -> None:
    """Shut a stored session down on the server's event loop, where Streamlit does it."""
    session = getattr(info, "session", None)
    if session is None:
        return
    loop = getattr(session, "_event_loop", None)
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(session.shutdown)
    else:
        session.shutdown()


def _session_cache(manager):
    """Streamlit's TTL cache of disconnected sessions, or None if it is not there."""
    cache = getattr(getattr(manager, "_session_storage", None), "_cache", None)
    return cache if callable(getattr(cache, "expire", None)) else None


def install(manager=None) -> bool:
    """Make the cache shut down every session it drops: on expiry (including the expiry it runs
    itself before storing another closed tab's session) and when it is full (128 sessions: a
    lecture hall ending drops the oldest). Idempotent; False if not possible."""
    manager = manager if manager is not None else session_manager()
    cache = _session_cache(manager)
    if cache is None:
        return False
    if getattr(cache, "_shuts_down_expired", False):
        return True
    expire_only = cache.expire  # the cache's own method (it calls self.expire() on each write)

    def expire_and_shut_down(*args, **kwargs):
        removed = expire_only(*args, **kwargs)
        for _, info in removed:
            _shut_down(info)
        if removed:
            log.info("Shut down %d session(s) of closed tabs.", len(removed))
        return removed

    evict_only = getattr(cache, "_evict_lru", None)  # called by each write to a full cache

    def evict_and_shut_down(*args, **kwargs):
        info = evict_only(*args, **kwargs)
        _shut_down(info)
        return info

    cache.expire = expire_and_shut_down
    if callable(evict_only):
        cache._evict_lru = evict_and_shut_down
    cache._shuts_down_expired = True
    return True


def shut_down_expired_sessions(manager=None, wait_s: float = 10.0) -> int:
    """Remove the stored sessions whose reconnect time is over and shut each down as Streamlit
    does for a tab closed for good (its uploads, media files and script thread released), without
    waiting for the next closed tab to make the cache look, and waits (up to wait_s) until the
    server's event loop has run those shutdowns. Returns how many were shut down."""
    manager = manager if manager is not None else session_manager()
    if not install(manager):
        return 0
    # The manager reads and writes this cache under its lock from the server's event loop.
    with getattr(manager, "_storage_lock", None) or contextlib.nullcontext():
        removed = _session_cache(manager).expire()
    _wait_for_shutdowns(removed, wait_s)
    return len(removed)


def _wait_for_shutdowns(removed, timeout_s: float) -> None:
    """Return once each event loop handed a shutdown has run it (callbacks run in order, so a
    marker queued after them runs after them), at most timeout_s per loop: the janitor's
    collection and `malloc_trim` that follow then free those sessions' memory, not a minute
    later. Call it from another thread than the loop's (the janitor's), never from the loop."""
    loops = {}
    for _, info in removed:
        loop = getattr(getattr(info, "session", None), "_event_loop", None)
        if loop is not None and not loop.is_closed():
            loops[id(loop)] = loop
    for loop in loops.values():
        ran = threading.Event()
        try:
            loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # the loop closed meanwhile: nothing left to wait for
            continue
        ran.wait(timeout_s)
