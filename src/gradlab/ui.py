"""``gradlab ui``: the MLflow UI on the project's store, started light and stopped whole.

- **Few processes.** ``mlflow server --workers 1`` with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``:
  the MLflow command and one uvicorn process serve the UI and its REST API. MLflow's defaults
  (4 uvicorn workers, a job runner and its 7 huey consumers, for GenAI evaluation jobs that
  browsing runs never submits) started 15 processes and ~2.4 GB here, and answered only after ~37 s.
- **Links when they work.** The command says the server is starting, polls ``/health`` and prints
  the link to each stage's runs table once it answers (or, if the server exits first, says so and
  exits 1).
- **A clean stop.** The server runs in its own process group, so that a terminal's Ctrl-C reaches
  ``gradlab ui`` alone, which then stops the server's whole tree: SIGTERM to the group and to every
  descendant, SIGKILL to whatever still runs 5 s later. SIGINT or SIGTERM sent to the ``gradlab ui``
  PID alone (``kill``, a process manager) does the same; the command exits 130 / 143. On Linux the
  MLflow command also gets SIGTERM should ``gradlab ui`` die without cleaning up (``kill -9``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from gradlab.process import ExitCode, handlers, interrupt_exit_code, interrupts_held, refuse

# MLflow 3's job runner and huey consumers run GenAI jobs (scorers, prompt optimisation, trace
# roll-ups) that browsing never submits; the variable is MLflow's own switch (mlflow.environment_variables).
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL for what still runs after this long
POLL_S = 0.25


def server_command(host: str, port: int, uri: str) -> list[str]:
    """The MLflow server on ``uri``: one uvicorn worker, no access log (one line per UI request otherwise)."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        "--uvicorn-opts", "--no-access-log",
    ]  # fmt: skip


def local_address(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard address: the loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now. Like uvicorn, with SO_REUSEADDR: connections the last server
    closed linger in TIME_WAIT for a minute and do not stop a new server, only a listening socket does."""
    family = socket.AF_INET6 if ":" in local_address(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError:
            return False
    return True


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # our own server: never via a proxy


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _in_child() -> None:  # pragma: no cover - runs in the child between fork and exec
    """SIGINT and SIGTERM deliverable (a blocked signal stays blocked across exec); on Linux, SIGTERM to this
    process when the one that started it dies (``gradlab ui`` killed with -9)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass


def start(argv: list[str]) -> subprocess.Popen:
    """``argv`` in its own session (a terminal's Ctrl-C reaches only us), with :data:`SERVER_ENV`."""
    return subprocess.Popen(
        argv,
        env={**os.environ, **SERVER_ENV},
        start_new_session=True,
        preexec_fn=_in_child,
    )


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """Stop ``proc``, its process group and every descendant: SIGTERM, then SIGKILL after ``grace`` seconds."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)  # the group: also a descendant that was re-parented
        except (ProcessLookupError, PermissionError):
            pass
        for p in tree:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, tree = psutil.wait_procs(tree, timeout=wait)
        if not tree:
            break
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def serve(
    host: str,
    port: int,
    uri: str,
    links: Callable[[str], list[tuple[str, str]]],
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
) -> int:
    """Run the UI until the server exits or we are interrupted; return the exit code.

    ``links(base_url)`` gives the ``(name, url)`` pairs printed once the server answers.
    """
    if not port_free(host, port):
        return refuse(
            f"--port: {port} on {host} is in use (another `gradlab ui`?); choose a free one", ExitCode.BAD_INPUT
        )
    base = f"http://{host}:{port}"
    health = f"http://{local_address(host)}:{port}/health".replace("://::1:", "://[::1]:")
    started = time.monotonic()
    echo(f"MLflow UI for {uri}: starting at {base} ...")
    proc = None
    try:
        with interrupts_held():  # started and known, or not started: nothing to leak
            proc = start(server_command(host, port, uri))
        found = links(base)  # while the server starts
        while not answers(health):
            if proc.poll() is not None:
                return refuse(f"the MLflow server exited with code {proc.returncode} before answering", ExitCode.FAILED)
            time.sleep(POLL_S)
        echo(f"MLflow UI at {base} (answered after {time.monotonic() - started:.1f} s; Ctrl-C to stop). Runs:")
        for name, url in found:
            echo(f"  {name:24s} {url}")
        code = proc.wait()
        return ExitCode.OK if code == 0 else refuse(f"the MLflow server exited with code {code}", ExitCode.FAILED)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM as gradlab.process.Terminated
        return interrupt_exit_code(exc)
    finally:
        # a second Ctrl-C or kill must not cut the stop short
        if proc is not None:
            with handlers({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}):
                stop(proc)
