"""Time and peak memory of each method against the batch size N.

Time: wall-clock seconds of one call (median over repeats, after one warm-up call
per method) and the process CPU seconds of the same calls. The grid runs torch on
ONE thread: per-call costs are then compared without OpenMP scheduling noise (on the
shared 2-core machine two threads made the many small ops of ``loop`` up to 100x
slower, in wall and CPU time, whenever the other core was busy).

Peak memory: bytes of tensor storage allocated through PyTorch's CPU allocator
during one call, at its high-water mark, relative to the start of the call. It is
read from ``torch.autograd.profiler.profile(profile_memory=True)``, which records
every allocation and free of the allocator with a timestamp: the peak is the
maximum of the running sum. Caveats: it sees only tensor storage (not Python
objects, autograd graph nodes or allocator/page overhead), tensors alive before the
call (the model, X) are not counted, and the profiled call runs separately from the
timed ones (the profiler slows many-small-op methods such as ``loop`` down).
``tracemalloc`` would see none of it (torch allocates outside Python's allocator).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch

from gradlab.studies.input_grad.methods import per_sample_input_grad


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], object]) -> int:
    """High-water mark of torch CPU-allocator bytes during ``fn()`` (relative to its start)."""
    prof = torch.autograd.profiler.profile(profile_memory=True)
    with _quiet_stderr():  # kineto prints two "USDT: profiler_start/stop" lines per use
        prof.__enter__()
    try:
        out = fn()
        del out
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def time_call(fn: Callable[[], object], min_seconds: float, max_repeats: int) -> tuple[float, float, int]:
    """(median wall seconds, median CPU seconds, repeats): repeat until ``min_seconds`` in total or ``max_repeats``."""
    walls, cpus = [], []
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        t1, c1 = time.perf_counter(), time.process_time()
        del out
        walls.append(t1 - t0)
        cpus.append(c1 - c0)
        if sum(walls) >= min_seconds or len(walls) >= max_repeats:
            return statistics.median(walls), statistics.median(cpus), len(walls)


def reference_backward(model: torch.nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """One plain batched backward: forward of the batch and gradient of its sum w.r.t. the parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(model(X).sum(), params))


def timing_grid(
    model: torch.nn.Module,
    make_x: Callable[[int], torch.Tensor],
    methods: Iterable[str],
    ns: list[int],
    caps: dict[str, int],
    min_seconds: float,
    max_repeats: int,
    memory: bool = True,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> list[dict]:
    """Rows (method, n, seconds, cpu_seconds, peak_bytes, repeats, status, note) for every method x N.

    A method is not run above ``caps[method]``; its row says so and gives the time
    extrapolated from the CPU time at the largest N measured, with the method's known
    scaling (``loop`` and ``jacrev`` are O(N^2)); on one thread the CPU time is what the
    wall time would be on an idle core. A reader sees what was avoided.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _grid(model, make_x, methods, ns, caps, min_seconds, max_repeats, memory, progress)
    finally:
        torch.set_num_threads(threads)


def _grid(model, make_x, methods, ns, caps, min_seconds, max_repeats, memory, progress) -> list[dict]:
    rows: list[dict] = []
    inputs = {n: make_x(n) for n in ns}
    plan = [("reference_backward", None), *((m, caps.get(m)) for m in methods)]
    for method, cap in progress(plan):
        if method == "reference_backward":

            def call(X, model=model):
                return reference_backward(model, X)
        else:

            def call(X, method=method):
                return per_sample_input_grad(model, X, method)

        call(inputs[ns[0]])  # warm-up: first-call costs (vmap/jacrev set-up) are not part of the scaling
        last = None
        for n in ns:
            X = inputs[n]
            if cap is not None and n > cap:
                seconds = last[1] * (n / last[0]) ** 2 if last else math.nan  # O(N^2)
                rows.append(
                    {
                        "method": method,
                        "n": n,
                        "seconds": math.nan,
                        "cpu_seconds": math.nan,
                        "peak_bytes": math.nan,
                        "repeats": 0,
                        "status": "capped",
                        "note": f"not run: N > {method}_max_n = {cap}; O(N^2) extrapolation ~{seconds:.3g} s",
                        "extrapolated_seconds": seconds,
                    }
                )
                continue
            wall, cpu, repeats = time_call(lambda X=X, call=call: call(X), min_seconds, max_repeats)
            rows.append(
                {
                    "method": method,
                    "n": n,
                    "seconds": wall,
                    "cpu_seconds": cpu,
                    "peak_bytes": peak_bytes(lambda X=X, call=call: call(X)) if memory else math.nan,
                    "repeats": repeats,
                    "status": "ok",
                    "note": "",
                    "extrapolated_seconds": math.nan,
                }
            )
            last = (n, cpu)
    return rows
