"""`gradlab ui`: links once the server answers, few processes, and a stop that leaves nothing behind."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import ROOT

from gradlab import cli, ui
from gradlab.tracking import Tracker

# a stand-in for the MLflow server: answers /health after `delay` seconds, then serves `requests` requests and exits
FAKE_SERVER = """
import http.server, sys, time
host, port, delay, requests = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
time.sleep(delay)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"OK")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, port), Health)
for _ in range(requests):
    server.handle_request()
"""


def fake_server_command(delay: float = 0.0, requests: int = 1):
    """A ``server_command`` replacement: the fake server on the same host and port."""
    return lambda host, port, uri: [sys.executable, "-c", FAKE_SERVER, host, str(port), str(delay), str(requests)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_links_are_printed_once_the_server_answers(store, monkeypatch):
    with Tracker().run("gradlab/gd", "gd"):
        pass
    monkeypatch.setattr(ui, "server_command", fake_server_command(delay=1.0))
    lines: list[str] = []
    port = free_port()
    code = ui.serve("127.0.0.1", port, store, lambda base: [("gradlab/gd", f"{base}/#/x")], lambda s: lines.append(s))
    assert code == 0
    assert lines[0].startswith(f"MLflow UI for {store}: starting at http://127.0.0.1:{port}")
    assert lines[1].startswith(f"MLflow UI at http://127.0.0.1:{port} (answered after ")
    answered = float(lines[1].split("answered after ")[1].split(" s")[0])
    assert answered >= 1.0  # not before the server answered
    assert lines[2].split() == ["gradlab/gd", f"http://127.0.0.1:{port}/#/x"]


def test_a_port_in_use_is_refused_before_anything_starts(store, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(ui, "start", lambda argv: started.append(argv))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --port: {port} on 127.0.0.1 is in use (another `gradlab ui`?); choose a free one"]
    assert started == []


def test_a_server_that_dies_before_answering_is_an_error(store, monkeypatch, capsys):
    monkeypatch.setattr(ui, "server_command", lambda host, port, uri: [sys.executable, "-c", "raise SystemExit(3)"])
    assert ui.serve("127.0.0.1", free_port(), store, lambda base: []) == 1
    assert "error: the MLflow server exited with code 3 before answering" in capsys.readouterr().err


TREE = """
import os, signal, subprocess, sys, time
# a child that ignores SIGTERM, and a grandchild in its own session (out of our process group)
stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")
a = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE)
b = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(600)"],
                     start_new_session=True, stdout=subprocess.PIPE)
a.stdout.readline(); b.stdout.readline()
print(a.pid, b.pid, flush=True)
time.sleep(600)
"""


def test_stop_ends_the_whole_tree_even_a_process_that_ignores_sigterm():
    proc = ui.start([sys.executable, "-c", TREE])
    deadline = time.monotonic() + 60
    while len(psutil.Process(proc.pid).children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) == 3
    started = time.monotonic()
    ui.stop(proc, grace=1.0)
    assert time.monotonic() - started < 5
    assert _alive(tree) == []


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)


def _alive(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(p.cmdline())[:120])
        except psutil.NoSuchProcess:
            pass
    return alive


def _port_free(port: int) -> bool:
    """As a new server binds: SO_REUSEADDR, so that the stopped server's connections in TIME_WAIT (it closed them
    first, after answering /health) do not count, only a socket still listening does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_gradlab_ui_alone_stops_the_whole_server(store, tmp_path, signum, code):
    """The real MLflow server: two processes (no workers, no job runner); SIGINT/SIGTERM sent to the
    `gradlab ui` PID alone leaves no MLflow process and a free port within 10 s."""
    with Tracker(store).run("gradlab/gd", "gd"):
        pass
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlab", "ui", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    seen: list[str] = []
    server: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not any("answered after" in line for line in seen):
            assert proc.poll() is None, f"gradlab ui exited with {proc.returncode}: {seen}"
            try:
                seen.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"the UI did not answer within 180 s: {seen}")
        time.sleep(0.5)  # the links follow the 'answered' line
        server = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in server]
        assert len(server) == 2, commands  # `mlflow server` and one uvicorn process
        assert not any("huey" in c or "job_runner" in c for c in commands), commands
        assert any("runs?workflowType=machine_learning" in line for line in [*seen, *list(out.queue)])

        proc.send_signal(signum)  # to the gradlab ui PID alone
        started = time.monotonic()
        assert proc.wait(timeout=10) == code
        while (_alive(server) or not _port_free(port)) and time.monotonic() - started < 10:
            time.sleep(0.1)
        assert _alive(server) == [] and _port_free(port), f"after {time.monotonic() - started:.1f} s"
        strays = [p for p in psutil.process_iter(["cmdline"]) if str(port) in (p.info["cmdline"] or [])]
        assert _alive(strays) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in server:  # a failed test leaves nothing running either
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
