"""deploy/: the nginx configuration is valid, and run-local.sh runs N replicas behind nginx with
session affinity, websockets passing through, and stops everything it started on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks.load import LoadOptions, run_load
from benchmarks.server import wait_healthy
from benchmarks.streamlit_client import FRONTEND_ASSET

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_LOCAL = REPO_ROOT / "deploy" / "run-local.sh"
PORT_BLOCKS = range(8560, 8590, 3)  # nginx on the first port, the replicas on the next two

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def write_config(folder: Path, replicas: int, env: dict | None = None) -> Path:
    subprocess.run(["bash", str(RUN_LOCAL), "--write-config", str(folder), str(replicas)],
                   check=True, env=env, timeout=30)
    return folder / "nginx.conf"


def test_the_configuration_balances_the_replicas_with_affinity(tmp_path):
    write_config(tmp_path, 3, dict(os.environ, HV_FIRST_PORT="9001", HV_LISTEN="127.0.0.1:9000"))
    text = (tmp_path / "hematovision.conf").read_text()
    servers = [line.strip() for line in text.splitlines() if "server 127.0.0.1:900" in line]
    assert servers == ["server 127.0.0.1:9001; server 127.0.0.1:9002; server 127.0.0.1:9003;"]
    assert "hash $hv_affinity consistent;" in text and "listen 127.0.0.1:9000;" in text
    assert "client_max_body_size 51m;" in text and "proxy_read_timeout 1h;" in text


@needs_nginx
def test_nginx_accepts_the_configuration(tmp_path):
    config = write_config(tmp_path, 2)
    checked = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


def free_block() -> int:
    """The first port of three consecutive free loopback ports."""
    for first in PORT_BLOCKS:
        try:
            for port in range(first, first + 3):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no three free loopback ports")


def replica_of(url: str, cookie: str | None) -> tuple[str, str | None]:
    """Which replica answered a request (nginx's header), and the affinity cookie it handed out."""
    request = urllib.request.Request(url + "/_stcore/health",
                                     headers={"Cookie": f"hv_replica={cookie}"} if cookie else {})
    with urllib.request.urlopen(request, timeout=10) as reply:  # Streamlit sets its XSRF cookie too
        ours = [c for c in reply.headers.get_all("Set-Cookie") or [] if c.startswith("hv_replica=")]
        return reply.headers["X-HematoVision-Replica"], ours[0] if ours else None


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@needs_nginx
def ctrl_c_as_in_a_terminal() -> None:
    """Give the script Ctrl-C's default action, as a terminal's shell does. A suite started in the
    background (`cmd &` in a script) inherits SIGINT ignored, and bash cannot trap a signal that was
    ignored when it started: the script then never stopped, and its replicas kept the test's pipe
    open for ever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_run_local_serves_two_replicas_behind_nginx_and_stops_them_real_data(shared_data, tmp_path,
                                                                            monkeypatch):
    first = free_block()
    for name, value in {"HEMATOVISION_DATA": shared_data, "HEMATOVISION_VAR": tmp_path / "var",
                        "HEMATOVISION_DB": f"sqlite:///{tmp_path / 'quiz.sqlite3'}"}.items():
        monkeypatch.setenv(name, str(value))  # the replicas' and run_load's answers database
    env = dict(os.environ, HV_LISTEN=f"127.0.0.1:{first}", HV_FIRST_PORT=str(first + 1),
               PYTHON=sys.executable)  # the replicas run on the tests' Python, venv active or not
    script = subprocess.Popen(["bash", str(RUN_LOCAL), "2"], cwd=REPO_ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_in_a_terminal)
    url = f"http://127.0.0.1:{first}"
    try:
        wait_healthy(url, timeout=240)  # both replicas warm, then nginx
        answered_by, cookie = replica_of(url, None)
        assert cookie and "HttpOnly" in cookie
        key = cookie.split(";")[0].split("=", 1)[1]
        assert {replica_of(url, key)[0] for _ in range(5)} == {answered_by}  # it stays put
        assert replica_of(url, key)[1] is None  # no new cookie once it has one
        assert len({replica_of(url, f"browser-{n}")[0] for n in range(20)}) == 2  # both used
        # The frontend's files: the first browser's request reaches a replica, later ones are
        # answered by nginx from its cache, gzipped and the same bytes.
        index = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        asset = FRONTEND_ASSET.findall(index)[0]
        answers = []
        for _ in range(2):
            request = urllib.request.Request(f"{url}/{asset}", headers={"Accept-Encoding": "gzip"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                answers.append((reply.headers["X-HematoVision-Cache"],
                                reply.headers["Content-Encoding"], reply.read()))
        assert [cache for cache, _, _ in answers] == ["MISS", "HIT"]
        assert answers[0][1:] == answers[1][1:] and answers[0][1] == "gzip"
        # Websockets through nginx: two students answer a question each.
        report = run_load(LoadOptions(url, "quiz", 2, timeout=240, answers=1))
        assert report["error_count"] == 0, report["errors"]
        assert report["answers_stored"] == 2
    finally:
        script.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            script.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    assert script.returncode is not None and "stopped" in script.stderr.read()
    time.sleep(1)
    assert not any(listening(port) for port in range(first, first + 3))
