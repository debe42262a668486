"""replica_set.py: `python serve.py` serves from one replica per core behind nginx, and stops the
whole set when any part of it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import replica_set
from benchmarks.server import descendants, wait_healthy

from test_deploy import listening, needs_nginx

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, count, rest", [
    ([], None, []),
    (["--replicas", "3", "--server.port", "8502"], 3, ["--server.port", "8502"]),
    (["--server.port=8502", "--replicas=1"], 1, ["--server.port=8502"]),
    (["--replicas", "auto"], None, []),
])
def test_the_replicas_option_is_taken_off_streamlits_options(argv, count, rest):
    assert replica_set.take_replicas_option(argv) == (count, rest)


@pytest.mark.parametrize("value", ["0", "-1", "two", "33", ""])
def test_a_bad_replica_count_is_refused_with_the_allowed_range(value):
    with pytest.raises(replica_set.ReplicaOptionError, match="1 to 32"):
        replica_set.take_replicas_option(["--replicas", value] if value else ["--replicas"])


@pytest.mark.parametrize("nginx, cores, count", [
    (None, 8, 1),  # nothing to balance the replicas: one process, and the log says why
    ("/usr/sbin/nginx", 1, 1), ("/usr/sbin/nginx", 2, 2),
    ("/usr/sbin/nginx", 16, replica_set.MOST_BY_DEFAULT),  # each replica holds its own models
])
def test_by_default_one_replica_per_core_where_nginx_can_balance_them(nginx, cores, count,
                                                                      monkeypatch, caplog):
    monkeypatch.setattr(replica_set.shutil, "which", lambda name: nginx)
    monkeypatch.setattr(replica_set, "cpu_count", lambda: cores)
    with caplog.at_level("INFO"):
        assert replica_set.default_count() == count
    assert ("install nginx" in caplog.text) == (nginx is None)


@pytest.mark.parametrize("argv, listen", [
    ([], "8501"),  # Streamlit's default: port 8501 on every interface
    (["--server.port", "8502"], "8502"),
    (["--server.address", "127.0.0.1", "--server.port=9000"], "127.0.0.1:9000"),
    (["--server.address", "::1", "--server.port", "9000"], "[::1]:9000"),
])
def test_nginx_listens_where_the_command_says(argv, listen, monkeypatch):
    monkeypatch.delenv("HV_LISTEN", raising=False)
    monkeypatch.delenv("STREAMLIT_SERVER_PORT", raising=False)
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    assert replica_set.listen_directive(argv) == listen


def test_a_port_set_in_the_environment_or_config_file_is_where_nginx_listens(tmp_path,
                                                                           monkeypatch):
    monkeypatch.delenv("HV_LISTEN", raising=False)
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("STREAMLIT_SERVER_PORT", "8600")
    assert replica_set.listen_directive([]) == "8600"
    assert replica_set.listen_directive(["--server.port", "8601"]) == "8601"  # as Streamlit
    monkeypatch.delenv("STREAMLIT_SERVER_PORT")
    config = tmp_path / "config.toml"
    config.write_text('[server]\nport = 8602\naddress = "127.0.0.1"\n')
    monkeypatch.setattr(replica_set, "CONFIG", config)
    assert replica_set.listen_directive([]) == "127.0.0.1:8602"


def test_the_replicas_get_every_option_but_the_public_address():
    argv = ["--server.port", "8502", "--server.address=0.0.0.0", "--server.maxUploadSize", "20"]
    assert replica_set.without_options(argv, ("--server.port", "--server.address")) == [
        "--server.maxUploadSize", "20"]


def test_replica_ports_are_distinct_and_free(monkeypatch):
    monkeypatch.delenv("HV_FIRST_PORT", raising=False)
    ports = replica_set.replica_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_supervisor(port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "serve.py", "--replicas", "2", "--server.address",
                             "127.0.0.1", "--server.port", str(port)], cwd=REPO_ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def replica_pids(supervisor: subprocess.Popen) -> list[int]:
    found = []
    for pid in descendants(supervisor.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--replicas" in command and command[command.index(b"--replicas") + 1] == b"1":
            found.append(pid)
    return found


@needs_nginx
def test_a_replica_that_dies_stops_the_set_and_frees_every_port_real_data(shared_data, tmp_path):
    port = free_port()
    env = dict(os.environ, HEMATOVISION_DATA=str(shared_data), HEMATOVISION_VAR=str(tmp_path),
               HEMATOVISION_DB=str(tmp_path / "quiz.sqlite3"))
    env.pop("HV_LISTEN", None)
    env.pop("HV_FIRST_PORT", None)
    supervisor = start_supervisor(port, env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=240)
        answered_by = set()
        for browser in range(20):  # nginx places browsers by their affinity cookie
            request = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/health",
                                             headers={"Cookie": f"hv_replica=browser-{browser}"})
            with urllib.request.urlopen(request, timeout=10) as reply:
                answered_by.add(reply.headers["X-HematoVision-Replica"])
        replica_ports = {int(address.rsplit(":", 1)[1]) for address in answered_by}
        assert len(replica_ports) == 2 and port not in replica_ports
        pids = replica_pids(supervisor)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)  # a replica crashes
        assert supervisor.wait(timeout=60) == 1
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)
    log = supervisor.stderr.read()
    assert "exited with code -9; stopping the others" in log and "replicas: stopped" in log
    time.sleep(1)
    assert not any(listening(p) for p in {port, *replica_ports})


@needs_nginx
def test_a_replica_that_cannot_start_stops_the_set_with_its_reason(tmp_path):
    env = dict(os.environ, HEMATOVISION_VAR=str(tmp_path),
               HEMATOVISION_DB="mysql://nobody@127.0.0.1:1/none")  # not a database we support
    env.pop("HV_LISTEN", None)
    supervisor = start_supervisor(free_port(), env)
    try:
        assert supervisor.wait(timeout=120) == 1
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    log = supervisor.stderr.read()
    assert "(HEMATOVISION_DB)" in log  # the replica's own message
    assert "exited with code 1; stopping the others" in log and "replicas: stopped" in log


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


@needs_nginx
def test_replicas_stop_themselves_when_the_supervisor_is_killed_outright_real_data(shared_data,
                                                                                    tmp_path):
    port = free_port()
    env = dict(os.environ, HEMATOVISION_DATA=str(shared_data), HEMATOVISION_VAR=str(tmp_path),
               HEMATOVISION_DB=str(tmp_path / "quiz.sqlite3"))
    env.pop("HV_LISTEN", None)
    supervisor = start_supervisor(port, env)
    nginx: list[int] = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=240)
        replicas = replica_pids(supervisor)
        nginx = [pid for pid in descendants(supervisor.pid) if "nginx" in process_name(pid)]
        assert len(replicas) == 2 and nginx
        supervisor.kill()  # SIGKILL: no clean-up runs in the supervisor
        supervisor.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in replicas):
            assert time.monotonic() < deadline, "the orphaned replicas kept running"
            time.sleep(0.5)
    finally:
        for pid in nginx:  # what the killed supervisor started and could not stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
