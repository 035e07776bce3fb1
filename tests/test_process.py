"""gradlab.process: exit codes, our own signal handlers (even when SIGINT starts ignored), atomic publish."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from gradlab.process import ExitCode, Terminated, guarded, interrupt_exit_code, publish

SELF_SIGNAL = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as inherited by a background job of a non-interactive shell
from gradlab.process import guarded

def work():
    os.kill(os.getpid(), signal.{name})
    time.sleep(10)
    return 0

sys.exit(guarded(work))
"""


def test_exit_codes_are_the_documented_ones():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 130, 143]
    assert interrupt_exit_code(KeyboardInterrupt()) == 130 and interrupt_exit_code(Terminated()) == 143


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_guarded_installs_its_own_handlers_even_if_sigint_was_ignored(name, code):
    out = subprocess.run(
        [sys.executable, "-c", SELF_SIGNAL.format(name=name)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == code, out.stderr


IN_A_FINALISER = """
import signal, sys, time, weakref
from gradlab.process import guarded, interrupt_once, redeliver_dropped_interrupts

class Thing:
    pass

def interrupted_in_a_weakref_callback(_):
    signal.raise_signal(signal.{name})
    sys.stderr.write("")  # the handler runs here, inside the callback: Python prints the exception and drops it

def work():
    {setup}
    thing = Thing()
    ref = weakref.ref(thing, interrupted_in_a_weakref_callback)
    del thing  # the callback runs now
    time.sleep(5)  # without the hook: the interrupt is lost and work() returns 0
    return 0

sys.exit(guarded(work))
"""


@pytest.mark.parametrize(
    "name, setup, code",
    [
        ("SIGINT", "pass", 130),  # guarded's own handler (KeyboardInterrupt)
        ("SIGTERM", "pass", 143),  # guarded's own handler (Terminated)
        ("SIGINT", "signal.signal(signal.SIGINT, interrupt_once)", 130),  # a sweep trial's: disarms itself
    ],
)
def test_an_interrupt_raised_inside_a_finaliser_is_delivered_again(name, setup, code):
    """A KeyboardInterrupt raised in a weakref callback is printed and dropped by Python; the hook sends the signal
    again (re-arming a handler that disarmed itself), so the interrupted work stops with its exit code."""
    script = IN_A_FINALISER.replace("{name}", name).replace("{setup}", setup)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Exception ignored" in proc.stderr  # the interrupt did land in the callback first


def test_guarded_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert guarded(lambda: 0) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_publish_replaces_the_folder_and_keeps_dvc_gitignore(tmp_path):
    final, tmp = tmp_path / "results" / "gd", tmp_path / "staging"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    (final / ".gitignore").write_text("/figures\n")
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    publish(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == [".gitignore", "new.txt"]
    assert not tmp.exists()
    assert [p.name for p in final.parent.iterdir()] == ["gd"]  # no .old-* left behind
