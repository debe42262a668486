"""The app server under load: how tests start it, when it is ready, and what it costs (from /proc).

The launch command lives here only (`SERVER_COMMAND`), so changing how the app starts changes
every test and benchmark at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# README's run command: models warm before the server listens (serve.py), production settings
# from .streamlit/config.toml, one replica per core behind nginx where nginx is installed; only
# the address is pinned to loopback here.
SERVER_COMMAND = [sys.executable, "serve.py", "--server.address", "127.0.0.1"]
SAMPLE_SECONDS = 0.2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_server(port: int, env: dict[str, str], cwd: Path | str = REPO_ROOT,
                 replicas: int | None = None) -> subprocess.Popen:
    """Start the app on 127.0.0.1:`port` from the repository root; the caller must stop it.

    `replicas`: None for README's command as it is (one replica per core where nginx is
    installed), 1 for one Streamlit process.
    """
    replica_option = [] if replicas is None else ["--replicas", str(replicas)]
    command = SERVER_COMMAND + replica_option + ["--server.port", str(port)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_server(server: subprocess.Popen, grace_seconds: float = 30.0) -> None:
    """Stop a server from `start_server` and any worker it forked (its own process group); a
    supervising serve.py stops its replicas and nginx on the SIGTERM (up to 15 s)."""
    for sent, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sent)
        except ProcessLookupError:
            break
        try:
            server.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    """Return once GET /_stcore/health answers 200; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy within {timeout:.0f} s")
        time.sleep(0.25)


def read_cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces: split after it
    # fields[0] is the state (field 3); utime, stime, cutime, cstime are fields 14-17.
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    children = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return own, children


def read_status(pid: int) -> dict[str, int]:
    """VmRSS (bytes) and Threads of a process from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == "VmRSS":
                values["rss"] = int(value.split()[0]) * 1024
            elif name == "Threads":
                values["threads"] = int(value)
    return values


def descendants(pid: int) -> list[int]:
    """Every live child, grandchild... of a process (worker processes the server forks)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


@dataclass
class ServerUsage:
    cpu_seconds: float = 0.0  # the server process itself during the run
    children_cpu_seconds: float = 0.0  # its worker processes (live ones sampled, reaped ones summed)
    rss_before: int = 0
    rss_after: int = 0
    peak_rss: int = 0
    peak_children_rss: int = 0  # the largest sum of the children's RSS seen in one sample
    # The largest RSS of the server and its children together in one sample: what the machine
    # holds for the app, replicas and heatmap workers included (serve.py with nginx supervises).
    peak_total_rss: int = 0
    max_threads: int = 0
    samples: int = 0


class ServerSampler:
    """Samples a server's RSS, threads and CPU every 0.2 s in a thread, between start() and stop().

    A thread, not a task: the load's event loop is busy exactly when the samples matter.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.usage = ServerUsage()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="server-sampler", daemon=True)
        self._child_cpu_start: dict[int, float] = {}

    def start(self) -> None:
        self._cpu_start, self._reaped_start = read_cpu_seconds(self.pid)
        self.usage.rss_before = read_status(self.pid)["rss"]
        for child in descendants(self.pid):
            self._child_cpu_start[child] = self._child_cpu(child)
        self._thread.start()

    def stop(self) -> ServerUsage:
        self._stopped.set()
        self._thread.join()
        self._sample()
        own, reaped = read_cpu_seconds(self.pid)
        self.usage.cpu_seconds = own - self._cpu_start
        # Live children: their own counters. Reaped ones: the parent's cutime+cstime, which
        # holds their whole life, so take off what they had used before the run.
        alive = set(descendants(self.pid))
        live = sum(self._child_cpu(child) - self._child_cpu_start.get(child, 0.0) for child in alive)
        used_before = sum(cpu for child, cpu in self._child_cpu_start.items() if child not in alive)
        self.usage.children_cpu_seconds = live + reaped - self._reaped_start - used_before
        self.usage.rss_after = read_status(self.pid)["rss"]
        return self.usage

    def _loop(self) -> None:
        while not self._stopped.wait(SAMPLE_SECONDS):
            self._sample()

    @staticmethod
    def _child_cpu(pid: int) -> float:
        try:
            return read_cpu_seconds(pid)[0]
        except OSError:
            return 0.0

    def _sample(self) -> None:
        try:
            status = read_status(self.pid)
        except OSError:  # the server died: keep what was seen
            return
        children_rss = 0
        for child in descendants(self.pid):
            try:
                children_rss += read_status(child).get("rss", 0)
            except OSError:
                continue
        usage = self.usage
        usage.samples += 1
        usage.peak_rss = max(usage.peak_rss, status.get("rss", 0))
        usage.max_threads = max(usage.max_threads, status.get("threads", 0))
        usage.peak_children_rss = max(usage.peak_children_rss, children_rss)
        usage.peak_total_rss = max(usage.peak_total_rss, status.get("rss", 0) + children_rss)
