"""`gradlab run STAGE --quick` is meant to take under a minute on a 2-core machine: measured here, per stage.

Each stage's quick run starts in a fresh process, as a user types it (interpreter start, imports, the run,
its figures and MLflow logging; the stage's own worker pools included), 3 rounds each
(``GRADLAB_BENCH_ROUNDS`` to change). Recorded per stage: median wall-clock seconds, median CPU seconds of
the process and its children, and the ratio of the wall clock to the minute (target <= 1.0). A ratio,
as every bench here; the minute is absolute by nature, so the machine's load average and core count are
recorded beside it (on a loaded machine the wall clock measures waiting for a core; the CPU time does not).
The tests check what does not depend on the machine's speed (same bytes on other kernels, no undefined
numbers, results/quick only): tests/test_quick.py.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradlab.stages import quick_stages

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted(quick_stages())
ROUNDS = int(os.environ.get("GRADLAB_BENCH_ROUNDS", "3"))
LIMIT_S = 60.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one(stage: str, tmp: Path) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(
        os.environ, GRADLAB_RESULTS=str(folder / "results"), MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}"
    )
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradlab", "run", stage, "--quick"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{stage} --quick failed:\n{done.stderr[-2000:]}")
    return wall, cpu


def run() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in STAGES:
            walls, cpus = zip(*(one(stage, Path(tmp)) for _ in range(ROUNDS)), strict=True)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            out[stage] = {
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "ratio": wall / LIMIT_S,
                "target": "<= 1.0 (wall clock / one minute)",
                "rounds": ROUNDS,
                "load_average": round(os.getloadavg()[0], 2),
                "cores": os.cpu_count(),
            }
            print(f"  {stage}: wall {wall:.1f} s, CPU {cpu:.1f} s", flush=True)
    return out
