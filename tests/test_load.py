"""The load tool against a real server: 10 simulated students answer a quiz over the websocket."""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
import urllib.request

import pytest

from benchmarks.load import LoadOptions, run_load
from benchmarks.server import start_server, stop_server, wait_healthy
from benchmarks.streamlit_client import FRONTEND_ASSET, load_frontend, require_loopback
from static_assets import bundle_folder

SESSIONS = 10
ANSWERS = 3
TEST_PORTS = range(8590, 8600)  # away from a developer's 8501


def free_port() -> int:
    """The first free loopback port of TEST_PORTS, else one the system picks."""
    for port in [*TEST_PORTS, 0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free loopback port")


@pytest.fixture
def server_url(shared_data, tmp_path, monkeypatch):
    """A real app server on the real data with its own cache and quiz database; always stopped."""
    monkeypatch.setenv("HEMATOVISION_DATA", str(shared_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("HEMATOVISION_DB", str(tmp_path / "quiz.sqlite3"))
    port = free_port()
    server = start_server(port, dict(os.environ))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, timeout=120)
        yield url
    finally:
        stop_server(server)


def test_quiz_load_real_data_stores_every_answer(server_url):
    report = run_load(LoadOptions(server_url, "quiz", SESSIONS, timeout=600, answers=ANSWERS,
                                  first_visit=True))  # each browser loads the frontend first
    assert report["error_count"] == 0, report["errors"]
    assert report["completed"] == SESSIONS
    assert report["answers_stored"] == SESSIONS * ANSWERS
    assert report["steps"]["first visit"]["count"] == SESSIONS


def test_the_frontend_comes_gzipped_from_memory_and_unchanged(server_url):
    """served_app.py puts static_assets in front of Streamlit (README's run command)."""
    index = urllib.request.urlopen(server_url + "/").read().decode()
    assets = FRONTEND_ASSET.findall(index)
    assert len(assets) > 20  # Streamlit's bundle: its main script, chunks and stylesheet
    for name in (assets[0], assets[-1]):
        request = urllib.request.Request(f"{server_url}/{name}",
                                         headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert "immutable" in answer.headers["Cache-Control"]
            body = gzip.decompress(answer.read())
        assert body == (bundle_folder() / name.removeprefix("static/")).read_bytes()
    assert asyncio.run(load_frontend(server_url)) < 1_000_000  # 2.3 MB uncompressed


@pytest.mark.parametrize("url", ["http://127.0.0.1:8501", "http://127.8.9.10:1",
                                 "http://localhost:8501", "http://[::1]:8501"])
def test_loopback_urls_are_accepted(url):
    require_loopback(url)


@pytest.mark.parametrize("url", ["http://example.com:8501", "http://10.0.0.5:8501",
                                 "http://0.0.0.0:8501", "http://[2001:db8::1]:8501",
                                 "https://127.0.0.1:8501", "127.0.0.1:8501"])
def test_other_hosts_are_refused_before_any_connection(url):
    with pytest.raises(ValueError):
        run_load(LoadOptions(url, "quiz", 1))


def test_sessions_are_capped():
    with pytest.raises(ValueError, match="sessions"):
        run_load(LoadOptions("http://127.0.0.1:1", "quiz", 501))


def test_a_think_pause_comes_before_every_step_but_the_first_and_is_not_timed():
    import asyncio
    import time

    from benchmarks.load import Recorder

    recorder = Recorder(think_seconds=0.3)
    started = []

    async def action():
        started.append(time.monotonic())
        return None

    async def journey():
        for name in ("open page", "start quiz", "answer"):
            await recorder.step(1, name, action(), step_timeout=5)

    begin = time.monotonic()
    asyncio.run(journey())
    assert started[0] - begin < 0.3  # the first step at once
    assert all(later - earlier >= 0.3 for earlier, later in zip(started, started[1:]))
    assert all(values[0] < 0.3 for values in recorder.latencies.values())  # the pause is not timed
