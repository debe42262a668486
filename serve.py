"""Start the dashboard for real use: models loaded and warmed, heatmap workers running, then
Streamlit serving `Home.py` (through `served_app.py`) with the production settings of
`.streamlit/config.toml`.

    HEMATOVISION_DATA=../shared/data python serve.py [--replicas N] [--server.port 8502 ...]

With nginx installed it serves from one replica per core behind nginx (`replica_set.py`): one
Streamlit process uses about one core. `--replicas 1` serves from this process alone.

`streamlit run Home.py` works too, but then the first visitor waits while the models load.
The warm-up runs in this process before the server listens, so the cache it fills
(`app_cache`) is the one every session uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
JANITOR_SECONDS = 60


def limit_malloc_arenas(arenas: int = 1) -> None:
    """Cap glibc's malloc arenas before Streamlit starts its threads.

    glibc gives threads their own heaps (up to 8 per core); a lecture hall's ~60 script threads
    each kept freed memory in theirs, and RSS stayed 50% above its warm level after the
    sessions closed. With one arena, what they free is in the one heap `malloc_trim` gives back:
    200 s after 50 Classify sessions, 395 MiB against 425 with two (warm 350-353). The lock
    it shares costs little: script threads run one at a time under the GIL anyway.
    M_ARENA_MAX (-8) must be set before those threads first allocate.
    """
    libc_name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None) if libc_name else None
    if mallopt is not None:  # glibc only
        mallopt(-8, arenas)


def start_memory_janitor(interval_s: float = JANITOR_SECONDS) -> None:
    """Once a minute, shut down closed tabs' sessions, collect cyclic garbage and give freed
    heap back to the operating system.

    config.toml turns off Streamlit's full collection after every script run (10x the server CPU
    of a page under load); Python's own generational collector still runs, but a lecture's
    freed session state stays in glibc's heap. One collection a minute costs a few ms here.
    """
    libc_name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    import session_reaper

    def tidy() -> None:
        for _ in range(120):  # hook the session store as soon as Streamlit's runtime exists
            if session_reaper.install():
                break
            time.sleep(1)
        while True:
            time.sleep(interval_s)
            try:  # closed tabs' sessions, which Streamlit keeps otherwise
                session_reaper.shut_down_expired_sessions()
            except Exception:  # noqa: BLE001 - the janitor must outlive a Streamlit change
                logging.exception("Could not shut down expired sessions")
            gc.collect()
            if malloc_trim is not None:  # glibc only
                malloc_trim(0)

    threading.Thread(target=tidy, name="memory-janitor", daemon=True).start()


def stop_when_orphaned(interval_s: float = 2.0) -> None:
    """A replica stops itself (SIGTERM, Streamlit's clean shutdown) once its supervisor is gone:
    it runs in a session of its own, so nothing else would stop it if the supervisor were
    killed outright, and it would hold its port and memory for ever."""
    supervisor = os.getppid()

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(interval_s)
        logging.warning("The supervisor (PID %d) is gone; this replica stops.", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    limit_malloc_arenas()
    sys.path.insert(0, str(ROOT))
    replica = os.environ.get("HEMATOVISION_REPLICA")  # set by replica_set for its replicas
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s "
                        + (f"[replica {replica}] " if replica else "") + "%(message)s")
    import replica_set

    try:
        replicas, argv = replica_set.take_replicas_option(argv)
    except replica_set.ReplicaOptionError as error:
        logging.error("%s", error)
        return 2
    if replicas is None:
        replicas = replica_set.default_count()
    if replicas > 1 or os.environ.get("HV_LISTEN"):
        # This process supervises (56 MiB, keeping the shared heatmap pool): each replica is
        # this command with --replicas 1, and upgrades the database and warms its models below.
        return replica_set.serve_replicas(replicas, argv)
    from hematovision_core import storage
    from hematovision_core.config import Settings

    settings = Settings.from_env()
    # Upgrade the answers database before listening: a schema error stops this server here,
    # with a message, rather than at a student's first answer. Replicas starting together take
    # turns (SQLite's write lock, PostgreSQL's advisory lock: hematovision_core.database).
    try:
        storage.prepare(settings.database)
    except storage.StorageError as error:
        logging.error("%s (HEMATOVISION_DB)", error)
        return 1
    logging.info("Answers database ready (schema at the newest Alembic revision).")
    from streamlit.web import cli

    import app_support

    started = time.perf_counter()
    models = app_support.warm_up_server(settings)
    logging.info("Warm: %s loaded in %.1f s; %s.", ", ".join(models) or "no model",
                 time.perf_counter() - started,
                 "heatmaps go to the supervisor's shared workers" if replica else
                 "heatmap workers starting")
    start_memory_janitor()
    if replica:
        stop_when_orphaned()
    import streamlit_theme_memo

    streamlit_theme_memo.install()  # after the warm-up: it imports streamlit.config
    # served_app.py: Home.py and pages/ as `streamlit run Home.py` serves them, with the
    # frontend's static files from memory, gzipped (static_assets.py).
    sys.argv = ["streamlit", "run", str(ROOT / "served_app.py"), *argv]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
