"""CPU numerics pinned in one place: the same numbers on any x86-64 machine with AVX2.

Which kernels compute a float depends on the CPU unless it is pinned, and a different kernel
sums in another order or rounds a transcendental differently; in a training loop the last bit
of one step becomes a different trajectory a few hundred steps later. Measured on this
project's CI machine kind (AMD EPYC, AVX2): ``ATEN_CPU_CAPABILITY=default`` changes
``torch.randn``, ``tanh`` and ``log_softmax``; ``MKL_CBWR=COMPATIBLE`` changes every
``torch.mm``; an Intel Xeon with AVX-512 picks AVX-512 kernels in ATen, MKL, OpenBLAS and
NumPy on its own. What is pinned, and why:

* ``ATEN_CPU_CAPABILITY=avx2``: torch's own vectorised kernels (random normals, reductions,
  activations) run their AVX2 versions everywhere, never the AVX-512 ones;
* ``MKL_CBWR=COMPATIBLE``: MKL's matrix products (torch's BLAS) take the one code path that MKL
  documents as giving the same results on Intel and non-Intel CPUs, with deterministic reductions
  (its other branches are "available only for Intel processors");
* ``OPENBLAS_CORETYPE=Haswell`` and ``OPENBLAS_NUM_THREADS=1``: NumPy's and SciPy's OpenBLAS use the
  kernels it picks by itself on AVX2 machines, on one thread (it splits work by thread count);
* ``NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR``: no AVX-512 loops in NumPy;
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN, should anything reach it;

and in the process (:func:`pin_runtime`): torch on a fixed number of threads (:data:`TORCH_THREADS`,
not the machine's core count, which sets how reductions are split) and oneDNN off for torch
(``torch.backends.mkldnn``: its kernels choose blockings by cache size).

Environment variables are read when a library first needs them (NumPy and OpenBLAS at import,
torch's capability and MKL at the first computation), so :func:`pin_environment` runs at the top
of every entry point (``gradlab`` and ``python pipelines/<stage>.py``) before NumPy is imported;
worker processes inherit the environment. ``GRADLAB_NUMERICS=native`` leaves the machine's own
kernels (faster on some machines; numbers then depend on the CPU). The cost of the pinning per
stage: ``python bench/run.py numerics``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
TORCH_THREADS = 1  # torch threads of a stage's process and of every trial worker
MODES = ("pinned", "native")


def mode(environ=None) -> str:
    """``GRADLAB_NUMERICS``: ``pinned`` (default) or ``native``; anything else is refused (exit 2)."""
    raw = (os.environ if environ is None else environ).get("GRADLAB_NUMERICS", "").strip() or "pinned"
    if raw not in MODES:
        from gradlab.config import ConfigError

        raise ConfigError("GRADLAB_NUMERICS", f"must be one of {', '.join(MODES)} (got {raw!r})")
    return raw


def pin_environment() -> list[str]:
    """Set :data:`PINNED` in ``os.environ`` (overriding what was there) unless ``GRADLAB_NUMERICS=native``.

    Returns the libraries that were loaded too early for the setting to reach them (``numpy``:
    its loops and OpenBLAS are chosen at import); empty when the pinning took effect. An invalid
    ``GRADLAB_NUMERICS`` is left for :func:`pin_runtime` to refuse.
    """
    try:
        if mode() != "pinned":
            return []
    except Exception:
        return []
    os.environ.update(PINNED)
    return [name for name in ("numpy",) if name in sys.modules]


def pin_runtime() -> dict[str, str]:
    """Settings that live in the process (threads, oneDNN off); returns :func:`describe`.

    Call once at the start of a stage and in every trial worker. In ``native`` mode only the thread
    count is fixed (it is part of the arithmetic on every machine).
    """
    import torch

    torch.set_num_threads(TORCH_THREADS)
    if mode() == "pinned":
        torch.backends.mkldnn.enabled = False
    return describe()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` intra-op threads for the block, the previous count restored after: the thread count splits
    reductions, so a computation repeated later (a logged model evaluated again) uses the count it had."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def describe() -> dict[str, str]:
    """What this process computes with: the mode, torch's CPU capability, the pinned variables as seen."""
    import torch

    info = {
        "mode": mode(),
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch_threads": str(torch.get_num_threads()),
    }
    info.update({k.lower(): os.environ.get(k, "") for k in PINNED})
    return info


def check() -> list[str]:
    """Problems that make this process's numbers differ from a pinned run's (empty when pinned and in effect)."""
    if mode() != "pinned":
        return ["GRADLAB_NUMERICS=native: the machine's own kernels (numbers depend on the CPU)"]
    problems = [f"{k}={os.environ.get(k)!r}, pinned value {v!r}" for k, v in PINNED.items() if os.environ.get(k) != v]
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    if capability != "AVX2":
        problems.append(
            f"torch's CPU capability is {capability}, not AVX2 (a CPU without AVX2, or torch computed before the "
            "pinning: numbers may differ from the committed ones)"
        )
    return problems
