"""``gradlab doctor SCRIPT [ARGS]``: run an unmodified training script under the NaN doctor.

Two passes in one process. The first runs the script with the cheap checks (loss at ``backward``, gradients and
buffers before ``optimizer.step()``, parameters and optimizer state after it; steps are counted by
``optimizer.step()`` calls) until the first non-finite value or error, at step N. The second runs the script
again from the start, with the same seeds, and traces every op of step N (forward, backward and the optimizer
step): it names the op, the module, the user's line and the cause. A script that seeds its own RNGs replays
exactly; one that does not is seeded by the doctor (``--seed``) before each pass.
"""

from __future__ import annotations

import functools
import random
import runpy
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.optim.optimizer as _optim

from gradlab.doctor.doctor import Found, NanDoctor, StopReplay
from gradlab.doctor.report import NonFiniteReport
from gradlab.doctor.trace import OpTracer

USAGE = "usage: gradlab doctor [--json PATH] [--seed N] [--user-gradlab] SCRIPT [ARGS...]"


@dataclass
class FirstPass:
    """Where the cheap pass stopped: the step, what it found (or the error), and the pass's doctor."""

    step: int | None
    found: Found | None
    error: BaseException | None
    doctor: NanDoctor


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)


def _run(path: Path, argv: list[str]) -> None:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def cheap_pass(path: Path, argv: list[str], seed: int, skip_gradlab: bool = True) -> FirstPass:
    """Run the script with the cheap checks; stop at the first non-finite value or error."""
    doctor = NanDoctor(mode="cheap", on_find="record", check_state_every=1, skip_gradlab=skip_gradlab)
    _seed(seed)
    doctor._install()
    try:
        _run(path, argv)
        doctor.final_check()
    except Found as found:
        return FirstPass(found.step if found.step is not None else doctor.steps, found, None, doctor)
    except Exception as error:  # noqa: BLE001 -- the second pass diagnoses it
        return FirstPass(doctor.steps, None, error, doctor)
    finally:
        doctor._uninstall()
    return FirstPass(None, None, None, doctor)


def traced_pass(
    path: Path, argv: list[str], seed: int, step: int, skip_gradlab: bool = True, by_backward: bool = False
) -> NonFiniteReport | None:
    """Run the script again and trace every op of ``step`` (counted in ``optimizer.step()`` calls, or in
    ``backward`` calls for a loop without an optimizer: ``by_backward``)."""
    doctor = NanDoctor(mode="trace", on_find="record", skip_gradlab=skip_gradlab)
    doctor.steps = step
    tracer = OpTracer(doctor.frames, step=step)
    state = {"steps": 0, "tracing": False}

    def start() -> None:
        tracer.__enter__()
        state["tracing"] = True

    def pre(optimizer, args, kwargs):
        if optimizer not in doctor.optimizers:
            doctor.optimizers.append(optimizer)
        if state["tracing"] and tracer.events:
            raise StopReplay()

    def post(optimizer, args, kwargs):
        state["steps"] += 1
        if state["tracing"] and (tracer.events or state["steps"] > step + 1):
            raise StopReplay()
        if not state["tracing"] and state["steps"] == step:
            start()

    handles = [_optim.register_optimizer_step_pre_hook(pre), _optim.register_optimizer_step_post_hook(post)]
    original = torch.Tensor.backward

    @functools.wraps(original)
    def backward(tensor, *args, **kwargs):  # a loop without an optimizer: a step is a backward
        if state["inside"]:  # the tracer calling it again, below its mode
            return original(tensor, *args, **kwargs)
        if state["tracing"] and tracer.events:
            raise StopReplay()
        state["inside"] = True
        try:
            out = original(tensor, *args, **kwargs)
        finally:
            state["inside"] = False
        state["backwards"] += 1
        if state["tracing"] and (tracer.events or state["backwards"] > step + 1):
            raise StopReplay()
        if not state["tracing"] and state["backwards"] == step:
            start()
        return out

    state["backwards"], state["inside"] = 0, False
    if by_backward:
        torch.Tensor.backward = backward
    error: BaseException | None = None
    _seed(seed)
    if step == 0:
        start()
    try:
        _run(path, argv)
    except StopReplay:
        pass
    except Exception as exc:  # noqa: BLE001
        error = exc
    finally:
        torch.Tensor.backward = original
        if state["tracing"]:
            tracer.__exit__(None, None, None)
        for h in handles:
            h.remove()
    doctor.models = list(tracer.roots)
    return doctor.report_from(tracer, step, error)


def diagnose_script(
    script: str | Path, argv: list[str] | None = None, *, seed: int = 0, skip_gradlab: bool = True
) -> NonFiniteReport | None:
    """Run ``script`` (with ``argv``) under the doctor: the report of its first non-finite value, or None.

    An error the script raises that is not about a non-finite value (nor a torch.distributions argument check)
    is raised again.
    """
    path = Path(script).resolve()
    argv = list(argv or [])
    first = cheap_pass(path, argv, seed, skip_gradlab)
    if first.step is None:
        return None
    report = traced_pass(path, argv, seed, first.step, skip_gradlab, by_backward=not first.doctor.optimizers)
    if report is not None:
        return report
    if first.found is not None:
        if first.found.phase in ("optimizer step", "optimizer state"):
            return first.doctor._post_mortem(first.found)
        return first.doctor._phase_only(first.found)
    raise first.error


def main(argv: list[str]) -> int:
    """``gradlab doctor [--json PATH] [--seed N] SCRIPT [ARGS...]``: 0 when all finite, 1 with a report, 2 bad use."""
    json_path, seed, skip_gradlab = None, 0, True
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-h", "--help"):
            print(USAGE + "\n\n" + (__doc__ or ""))
            return 0
        if opt == "--user-gradlab":
            skip_gradlab = False
        elif opt in ("--json", "--seed") and args:
            value = args.pop(0)
            if opt == "--json":
                json_path = value
            elif value.lstrip("-").isdigit():
                seed = int(value)
            else:
                print(f"error: --seed takes an integer, got {value!r}\n{USAGE}", file=sys.stderr)
                return 2
        else:
            print(f"error: unknown option {opt!r}\n{USAGE}", file=sys.stderr)
            return 2
    if not args:
        print(f"error: no script given\n{USAGE}", file=sys.stderr)
        return 2
    script = Path(args[0])
    if not script.is_file():
        print(f"error: no such script: {script}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        report = diagnose_script(script, args[1:], seed=seed, skip_gradlab=skip_gradlab)
    except Exception:  # noqa: BLE001 -- the script's own error, not a non-finite value
        traceback.print_exc()
        print("gradlab doctor: the script failed with the error above (no non-finite value found)", file=sys.stderr)
        return 1
    if report is None:
        print("gradlab doctor: no non-finite value found", file=sys.stderr)
        return 0
    print("gradlab doctor: " + str(report), file=sys.stderr)
    if json_path:
        report.write_json(json_path)
    return 1
