"""Two app replicas on one PostgreSQL database: a quiz answered through one replica is in the
instructor view served by the other (both real servers on loopback, driven over the websocket)."""

from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks.load import LoadOptions, run_load
from benchmarks.server import start_server, stop_server, wait_healthy
from benchmarks.streamlit_client import BrowserSession
from test_load import free_port

PASSWORD = "replica-test-password"
ANSWERS = 2


async def instructor_view(url: str) -> dict:
    """Sign in on the Instructor page; the quiz codes offered and the metrics shown."""
    async with BrowserSession(url, receive_timeout=120) as browser:
        await browser.open_page("Instructor")
        await browser.set_string("instructor_password", PASSWORD)  # held in the sign-in form
        result = await browser.click("instructor_login_button")  # which sends it, as in a browser
        codes = result.widget("instructor_code")
        metrics = {element.metric.label: element.metric.body for element in result.elements.values()
                   if element.WhichOneof("type") == "metric"}
        return {"codes": list(codes.proto.options) if codes else [], "metrics": metrics,
                "exceptions": result.exceptions}


@pytest.mark.postgres
def test_an_answer_given_on_one_replica_is_seen_on_the_other_real_data(shared_data, postgres_url,
                                                                        tmp_path, monkeypatch):
    for name, value in {"HEMATOVISION_DATA": shared_data, "HEMATOVISION_VAR": tmp_path / "var",
                        "HEMATOVISION_DB": postgres_url,
                        "HEMATOVISION_INSTRUCTOR_PASSWORD": PASSWORD}.items():
        monkeypatch.setenv(name, str(value))  # the replicas share the var/ caches and the database
    servers, urls = [], []
    try:
        for _ in range(2):  # one after the other: the second port is free once the first listens
            port = free_port()
            servers.append(start_server(port, dict(os.environ), replicas=1))
            urls.append(f"http://127.0.0.1:{port}")
            wait_healthy(urls[-1], timeout=120)
        report = run_load(LoadOptions(urls[0], "quiz", 1, timeout=300, answers=ANSWERS))
        assert report["error_count"] == 0, report["errors"]
        assert report["answers_stored"] == ANSWERS  # counted in PostgreSQL by this process
        view = asyncio.run(asyncio.wait_for(instructor_view(urls[1]), 180))
    finally:
        for server in servers:
            stop_server(server)
    assert view["exceptions"] == []
    assert [code.split(" ")[0] for code in view["codes"]] == [report["quiz_code"]]
    assert view["metrics"]["Students"] == "1" and view["metrics"]["Answers"] == str(ANSWERS)
