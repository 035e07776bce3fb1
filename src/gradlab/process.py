"""Process concerns in one place: exit codes, signals, interrupt holding, atomic publish.

Every entry point (``gradlab``, ``pipelines/<stage>.py``, the report) runs its work through
:func:`guarded`, which installs its *own* handlers instead of inheriting them: SIGINT raises
:class:`KeyboardInterrupt` (exit 130) and SIGTERM raises :class:`Terminated` (exit 143).
A process started from a background job of a non-interactive shell (``nohup make test &``,
a scheduler) inherits SIGINT *ignored*, and Python keeps an inherited ``SIG_IGN``; without
its own handler such a stage could not be stopped with Ctrl-C or ``kill -INT``.

Only stdlib imports here: the command's start-up must stay light.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ExitCode(IntEnum):
    """The process exit codes of every gradlab command (README: Exit codes)."""

    OK = 0
    FAILED = 1  # runtime failure, with a clear message
    BAD_INPUT = 2  # params, CLI, environment: one line naming the key; nothing written
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (runs end KILLED) but exits 143."""


def refuse(err: BaseException | str, code: ExitCode) -> ExitCode:
    """Print ``error: <err>`` (one line) on stderr and return ``code``: bad input or a failure before any work."""
    print(f"error: {err}", file=sys.stderr)
    return code


def raise_terminated(signum, frame) -> None:  # pragma: no cover - exercised by signal tests
    raise Terminated()


def interrupt_exit_code(exc: KeyboardInterrupt) -> ExitCode:
    """143 for :class:`Terminated`, 130 for any other interrupt."""
    return ExitCode.TERMINATED if isinstance(exc, Terminated) else ExitCode.INTERRUPTED


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handlers(installed: dict[int, Any]) -> Iterator[None]:
    """Install ``{signum: handler}`` for the block (main thread only: elsewhere nothing is changed)."""
    if not in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in installed.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def sigterm_raises():
    """SIGTERM raises :class:`Terminated` for the block."""
    return handlers({signal.SIGTERM: raise_terminated})


def entry_point_signals():
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated` for the block, whatever was inherited."""
    return handlers({signal.SIGINT: signal.default_int_handler, signal.SIGTERM: raise_terminated})


def ignoring_sigint():
    """SIGINT ignored for the block: bookkeeping after an interrupt must not be interrupted by a second one."""
    return handlers({signal.SIGINT: signal.SIG_IGN})


_REARM: dict[int, Any] = {}  # signum -> the handler that disarmed itself when it raised


def interrupt_once(signum, frame) -> None:
    """A SIGINT handler for work that cleans up after an interrupt: raise KeyboardInterrupt once, then ignore SIGINT
    (a second Ctrl-C must not interrupt the cleanup)."""
    signal.signal(signum, signal.SIG_IGN)
    _REARM[signum] = interrupt_once
    raise KeyboardInterrupt


def _redeliver(unraisable) -> None:
    """``sys.unraisablehook``: an interrupt Python dropped is sent again.

    A signal handler raises wherever the main thread is. Inside a finaliser (a ``__del__``, a weakref callback run
    by the garbage collector) Python prints "Exception ignored in ..." and goes on, so the interrupt is lost: a
    sweep trial interrupted in a weakref callback ran to the end and its run ended FINISHED (serial test pass, 1
    of 1). The same signal is sent again 10 ms later (with the handler that disarmed itself, :func:`interrupt_once`,
    back in place), so that the code the finaliser interrupted gets it."""
    _PREVIOUS_HOOK(unraisable)
    exc = unraisable.exc_value
    if not isinstance(exc, KeyboardInterrupt) or not in_main_thread():
        return
    signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
    handler = _REARM.pop(signum, None)
    if handler is not None and signal.getsignal(signum) is signal.SIG_IGN:
        signal.signal(signum, handler)
    # Not now: a handler run inside this hook raises into the hook, and Python drops that too. 10 ms later the
    # finaliser has returned; should the signal land in another finaliser, this hook runs again.
    timer = threading.Timer(0.01, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


_PREVIOUS_HOOK = sys.unraisablehook


def redeliver_dropped_interrupts() -> None:
    """Install :func:`_redeliver` as ``sys.unraisablehook`` (idempotent)."""
    sys.unraisablehook = _redeliver


def guarded(fn: Callable[..., int], *args, **kwargs) -> int:
    """Call ``fn`` (which returns an exit code) under :func:`entry_point_signals`; an interrupt exits 130/143 (also
    one raised inside a finaliser, :func:`redeliver_dropped_interrupts`)."""
    redeliver_dropped_interrupts()
    try:
        with entry_point_signals():
            return fn(*args, **kwargs)
    except KeyboardInterrupt as exc:
        return interrupt_exit_code(exc)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM (main thread only) until the block is done; they are delivered afterwards."""
    if not in_main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


KEPT_ON_PUBLISH = (".gitignore", "replication.json")


def publish(tmp: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``tmp`` so that a reader never sees a half-written one.

    Files of ``final`` that the stage does not write are kept: DVC's ``.gitignore`` (its list of the
    cached outputs) and ``replication.json`` (written by ``gradlab replicate``; it names the results
    it was compared with). Interrupts are held while the two renames happen.
    """
    tmp, final = Path(tmp), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    with interrupts_held():
        for name in KEPT_ON_PUBLISH:
            if (final / name).exists() and not (tmp / name).exists():
                shutil.copy2(final / name, tmp / name)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
