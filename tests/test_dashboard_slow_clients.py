"""A page that stops reading its event stream never keeps ``actorflow run`` alive: a
real process with a big graph, a raw client that never reads, and SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dashboard_graph import Calibrate, Readings, Store

import actorflow as af

TESTS = Path(__file__).resolve().parent
CHECKOUT = TESTS.parent

RUN = [sys.executable, "-m", "actorflow", "run"]
WIDE = 300
"""Modules in the graph: a snapshot of many kilobytes fills a socket's buffers fast."""


def build_wide() -> af.Graph:
    """A chain of :data:`WIDE` modules (a source, processors, a sink)."""
    graph = af.Graph(name="wide")
    graph.add("m0", Readings, delay=0.01)
    for n in range(1, WIDE - 1):
        graph.add(f"m{n}", Calibrate)
        graph.link(f"m{n - 1}", f"m{n}")
    graph.add(f"m{WIDE - 1}", Store)
    graph.link(f"m{WIDE - 2}", f"m{WIDE - 1}")
    return graph


def _unsent(port: int) -> int:
    """The bytes the server at ``port`` has queued, unsent, to its clients."""
    queued = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            queued += int(fields[4].split(":")[0], 16)
    return queued


def test_a_client_that_never_reads_does_not_keep_the_run_alive() -> None:
    env = {**os.environ, "PYTHONPATH": f"{CHECKOUT}:{TESTS}"}
    process = subprocess.Popen(
        [*RUN, "test_dashboard_slow_clients:build_wide", "--no-view", "--dashboard", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # Until the server's buffer for this client stops draining: its writes block.
        deadline = time.monotonic() + 40
        before = -1
        while (now := _unsent(port)) == 0 or now != before:
            assert time.monotonic() < deadline, "the stream never filled the buffers"
            before = now
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        process.wait(timeout=15)
        assert time.monotonic() - began < 10
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
