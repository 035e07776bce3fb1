"""The cost of pinning the CPU numerics (gradlab.numerics), per stage: pinned vs the machine's own kernels.

Each side runs the stage on its quick parameters (its study's tiny.yaml) in a fresh process, since the
pinned settings are read when a process first computes: `GRADLAB_NUMERICS=pinned` (the default) against
`GRADLAB_NUMERICS=native`, alternating, 5 rounds each (``GRADLAB_BENCH_ROUNDS`` to change). The time is
that of `run_stage` inside the child (its imports and interpreter start are left out; MLflow logging and
figures are in, as in a real run).
Target: ratio <= 1.2 per stage. On an AVX2 machine the pinned ATen capability is the one torch picks anyway,
so the cost measured here is MKL's COMPATIBLE code path (and oneDNN off); an AVX-512 machine also pays
for AVX2 kernels instead of AVX-512 ones.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["gd", "input_grad", "mdn", "pg_cartpole", "pg_pong", "spearman"]
ROUNDS = int(os.environ.get("GRADLAB_BENCH_ROUNDS", "5"))  # alternating rounds per side
TARGET = 1.2

CHILD = """
import sys, time
from gradlab.numerics import pin_environment
pin_environment()
from gradlab.runner import run_stage
start = time.perf_counter()
code = run_stage(sys.argv[1], params_file=sys.argv[2])
print(f"SECONDS {time.perf_counter() - start}")
raise SystemExit(code)
"""


def one(stage: str, mode: str, tmp: Path) -> float:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(
        os.environ,
        GRADLAB_NUMERICS=mode,
        GRADLAB_RESULTS=str(folder / "results"),
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
    )
    from gradlab.stages import quick_params_file

    params = quick_params_file(stage)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, stage, str(params)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{stage} ({mode}) failed:\n{done.stderr[-2000:]}")
    return float(next(x for x in done.stdout.splitlines() if x.startswith("SECONDS")).split()[1])


def run() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in STAGES:
            pinned, native = [], []
            for _ in range(ROUNDS):
                pinned.append(one(stage, "pinned", Path(tmp)))
                native.append(one(stage, "native", Path(tmp)))
            sp, sn = statistics.median(pinned), statistics.median(native)
            out[stage] = {
                "subject_s": sp,
                "reference_s": sn,
                "ratio": sp / sn,
                "rounds": ROUNDS,
                "target": f"<= {TARGET} (pinned / native, quick parameters)",
            }
    return out
