"""One machine's lecture hall on every core: `serve.py` replicas behind nginx.

Streamlit runs every session's page in threads of one Python process, so one server keeps about
one core busy however many the machine has, and its event loop (websockets, HTTP) waits for the
GIL behind the page runs. On this project's 2-core machine, 200 students pressing Start the
instant the Quiz page arrives waited 7.3-8.5 s (p95) for the page from one process, and 2.4-3.3 s
from two replicas behind nginx, which also used less CPU (README, "Lecture-hall load").

`python serve.py` therefore starts one replica per core (at most `MOST_BY_DEFAULT`) when nginx is
installed: each a whole `serve.py` on its own loopback port, and nginx on the address and port the
command names (8501 by default) with the session affinity of `deploy/hematovision.conf.template`
(a browser stays on one replica, which holds its session, uploads and images). Without nginx it
serves in one process, as before, and says how to use the other cores. `--replicas N` sets the
count; `--replicas 1` is one process, no nginx (unless HV_LISTEN names nginx's address, as
`deploy/run-local.sh` does to pin the ports).

The supervisor (`serve_replicas`) keeps the machine's one pool of heatmap workers
(`explain_pool.share`: TensorFlow processes sized for the cores, not per replica), starts the
replicas, each in its own process group, waits until every one is warm, and only then starts
nginx: the public port answers once the whole set is ready. Ctrl-C or SIGTERM stops everything it
started. A replica or nginx that dies stops the rest with a message, so whatever restarts the
server (systemd, docker) restarts a whole set, never half of one. A supervisor killed outright
(SIGKILL) cannot stop anything: its replicas notice their parent is gone and stop themselves
(`serve.py`), and nginx, left answering 502, must be stopped by its PID (its `nginx.pid`).

The supervisor hands its replicas HEMATOVISION_REPLICA (their number, in their log lines) and
HEMATOVISION_HEATMAP_POOL (the shared pool's socket and key); neither is meant to be set by hand.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Sequence

from hematovision_core.runtime import cpu_count

ROOT = Path(__file__).resolve().parent
TEMPLATE = ROOT / "deploy" / "hematovision.conf.template"
CONFIG = ROOT / ".streamlit" / "config.toml"
MOST_BY_DEFAULT = 4  # each replica holds its own models and sessions (~0.6 GiB warm)
STARTUP_SECONDS = 300  # warm-up, the heatmap worker's TensorFlow import, on a busy machine
STOP_SECONDS = 15

log = logging.getLogger(__name__)


class ReplicaOptionError(ValueError):
    """`--replicas` was given something other than a whole number from 1 to 32, or "auto"."""


def take_replicas_option(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """Split `--replicas N` (or `--replicas=N`) off the command line; None when not given or
    "auto". Every other argument is Streamlit's and is passed on as it is."""
    count, rest, items = None, [], list(argv)
    while items:
        item = items.pop(0)
        if item == "--replicas" or item.startswith("--replicas="):
            value = item.partition("=")[2] if "=" in item else (items.pop(0) if items else "")
            if value == "auto":
                count = None
            elif value.isdigit() and 1 <= int(value) <= 32:
                count = int(value)
            else:
                raise ReplicaOptionError(f"--replicas takes a number from 1 to 32 or 'auto', "
                                         f"not {value!r}")
        else:
            rest.append(item)
    return count, rest


def default_count() -> int:
    """One replica per core, at most `MOST_BY_DEFAULT`; one without nginx to balance them."""
    cores_here = cpu_count()
    if shutil.which("nginx") is None:
        if cores_here > 1:
            log.info("nginx is not installed, so the app serves from one process and uses about "
                     "one of this machine's %d cores for pages; install nginx (Debian: apt-get "
                     "install nginx) to serve a lecture hall from one replica per core.",
                     cores_here)
        return 1
    return min(cores_here, MOST_BY_DEFAULT)


def streamlit_option(argv: Sequence[str], name: str) -> str | None:
    """A Streamlit option as Streamlit would read it: the last `--name value` or `--name=value`,
    else its `STREAMLIT_...` environment variable, else the project's `.streamlit/config.toml`,
    else None."""
    value = None
    for index, item in enumerate(argv):
        if item == name and index + 1 < len(argv):
            value = argv[index + 1]
        elif item.startswith(name + "="):
            value = item.split("=", 1)[1]
    if value is None:
        value = os.environ.get("STREAMLIT_" + name[2:].upper().replace(".", "_"))
    if value is None and CONFIG.is_file():
        section, _, key = name[2:].partition(".")
        found = tomllib.loads(CONFIG.read_text()).get(section, {}).get(key)
        value = None if found is None else str(found)
    return value


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """The command line less these options and their values."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in names:
            skip = True
        elif not any(item.startswith(name + "=") for name in names):
            kept.append(item)
    return kept


def listen_directive(argv: Sequence[str]) -> str:
    """nginx's `listen` for the address and port the command names (Streamlit's defaults:
    port 8501 on every interface). HV_LISTEN, as deploy/run-local.sh sets it, wins."""
    if os.environ.get("HV_LISTEN"):
        return os.environ["HV_LISTEN"]
    port = streamlit_option(argv, "--server.port") or "8501"
    address = streamlit_option(argv, "--server.address")
    if not address:
        return port
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def replica_ports(count: int) -> list[int]:
    """Loopback ports for the replicas: HV_FIRST_PORT and the ones after it, else free ones the
    system picks (held open together, so no two are the same)."""
    if os.environ.get("HV_FIRST_PORT"):
        first = int(os.environ["HV_FIRST_PORT"])
        return list(range(first, first + count))
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def write_nginx_config(run_dir: Path, listen: str, ports: Sequence[int]) -> Path:
    """nginx.conf for a run folder: the template's site with these replicas, logs to stderr, and
    every path nginx writes inside the run folder. Returns the main file's path."""
    servers = " ".join(f"server 127.0.0.1:{port};" for port in ports)
    site = "".join(
        line if line.lstrip().startswith("#") else
        line.replace("${HV_LISTEN}", listen).replace("${HV_UPSTREAM_SERVERS}", servers)
        .replace("${HV_CACHE_DIR}", str(run_dir / "tmp" / "static"))
        for line in TEMPLATE.read_text().splitlines(keepends=True))
    (run_dir / "hematovision.conf").write_text(site)
    # nginx's workers drop root privileges and write request bodies here.
    (run_dir / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (run_dir / "tmp").chmod(0o1777)
    run_dir.chmod(0o755)
    main = run_dir / "nginx.conf"
    main.write_text(f"""# Written by replica_set.py for {len(ports)} replica(s).
worker_processes 1;          # a worker's share of a lecture hall is small next to the replicas'
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run_dir}/tmp/client_body;
    proxy_temp_path {run_dir}/tmp/proxy;
    fastcgi_temp_path {run_dir}/tmp/fastcgi;
    uwsgi_temp_path {run_dir}/tmp/uwsgi;
    scgi_temp_path {run_dir}/tmp/scgi;
    include {run_dir}/hematovision.conf;
}}
""")
    return main


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


class Stop(Exception):
    """Ctrl-C or SIGTERM reached the supervisor."""


def _raise_stop(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def serve_replicas(count: int, argv: Sequence[str]) -> int:
    """Run `count` replicas and nginx in front until a signal or until one of them dies."""
    listen = listen_directive(argv)
    ports = replica_ports(count)
    replica_argv = without_options(argv, ("--server.port", "--server.address"))
    run_dir = Path(tempfile.mkdtemp(prefix="hematovision-replicas."))
    started: list[tuple[str, subprocess.Popen]] = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: its terminal closed
        signal.signal(signum, _raise_stop)
    from hematovision_core import explain_pool
    from hematovision_core.config import Settings
    from hematovision_core.model_io import list_model_folders

    try:
        pool_env = explain_pool.share(list_model_folders(Settings.from_env().models_dir))
        for number, port in enumerate(ports, start=1):
            command = [sys.executable, str(ROOT / "serve.py"), "--replicas", "1", *replica_argv,
                       "--server.port", str(port), "--server.address", "127.0.0.1"]
            env = {name: value for name, value in os.environ.items()
                   if name not in ("HV_LISTEN", "HV_FIRST_PORT")}  # a replica serves, alone
            env.update(pool_env, HEMATOVISION_REPLICA=str(number))
            # stdout: only Streamlit's "view your app at" banner with the replica's own port,
            # which is not where browsers go; logs and errors are on stderr.
            started.append((f"replica {number} (127.0.0.1:{port})",
                            subprocess.Popen(command, env=env, start_new_session=True,
                                             stdout=subprocess.DEVNULL)))
        _wait_until_warm(started, ports)
        config = write_nginx_config(run_dir, listen, ports)
        nginx = subprocess.Popen(["nginx", "-p", str(run_dir), "-c", str(config),
                                  "-g", "daemon off;"], start_new_session=True)
        started.append(("nginx", nginx))
        log.info("The app is at http://%s (nginx, in front of %d replicas on 127.0.0.1:%s); "
                 "Ctrl-C stops all.", listen if ":" in listen else f"localhost:{listen}", count,
                 ", ".join(map(str, ports)))
        while True:
            _check_alive(started)
            time.sleep(0.5)
    except Stop as stop:
        log.info("%s: stopping the replicas and nginx.", stop)
        return 0
    except RuntimeError as error:
        log.error("%s; stopping the others.", error)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        _stop_all(started)
        explain_pool.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
        print("replicas: stopped", file=sys.stderr, flush=True)


def _check_alive(started: Sequence[tuple[str, subprocess.Popen]]) -> None:
    for name, process in started:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")


def _wait_until_warm(started: Sequence[tuple[str, subprocess.Popen]],
                     ports: Sequence[int]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    waiting = set(ports)
    while waiting:
        _check_alive(started)
        waiting = {port for port in waiting if not healthy(port)}
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"replicas on ports {sorted(waiting)} were not healthy after "
                               f"{STARTUP_SECONDS} s")
        time.sleep(0.5)


def _stop_all(started: Sequence[tuple[str, subprocess.Popen]]) -> None:
    """SIGTERM to each process group this supervisor started (nginx first: no new requests),
    then SIGKILL to any still running after `STOP_SECONDS`."""
    for _, process in reversed(started):
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for _, process in started:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
