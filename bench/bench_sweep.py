"""sweep: trials/s with 2 workers vs 1 (target >= 1.7x on 2 cores); MLflow tracking overhead of a trial (<= 5 %).

Both measured in this one run, alternating the two sides, median over rounds (BENCH_SWEEP_ROUNDS, default 5);
BENCH_SWEEP_PARTS=scaling or =tracking runs one of the two.
Wall-clock ratios are only meaningful on an otherwise idle machine: the load average is recorded beside them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager, redirect_stderr
from io import StringIO
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_SWEEP_ROUNDS", "5"))
PARTS = os.environ.get("BENCH_SWEEP_PARTS", "scaling,tracking").split(",")  # either or both
# a CPU-bound gd trial (~2-4 s of CPU): longer curves, fewer figures' worth of data than the defaults
TRIAL = [
    "gd.threshold.steps=1500",
    "gd.rules.steps=1500",
    "gd.mlp.steps=300",
    "gd.lr_grid.num=3",
    "gd.seeds=1",
    "gd.sharpness.lrs=[0.2]",
    "gd.sharpness.steps=100",
    "gd.sharpness.every=20",
    "gd.sharpness.power_iters=10",
]
GRID = ["gd.rules.lr_times_lambda_max=0.5,0.75,1.0"]
SEEDS = 2  # 6 trials per sweep: an even number, so 2 workers can share them equally


class _NullRun:
    id = "none"

    def log_params(self, *a, **k):
        pass

    log_metrics = log_curve = set_tags = log_artifacts = log_artifact = log_params


class _NullTracker:
    """The Tracker's interface with nothing behind it: the study's work without MLflow."""

    @contextmanager
    def run(self, *args, **kwargs):
        yield _NullRun()


@contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fresh_store(tmp: Path, template: Path) -> str:
    db = tmp / f"mlflow-{time.monotonic_ns()}.db"
    shutil.copy(template, db)
    return f"sqlite:///{db}"


def run() -> dict:
    from mlflow.tracking import MlflowClient

    from gradlab.config import flatten
    from gradlab.context import StageContext, write_json
    from gradlab.runner import freeze_imports, resolve_params, run_stage, seed_everything
    from gradlab.stages import get_stage, quick_params_file
    from gradlab.sweep import sweep

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    params_file = tmp / "params.yaml"
    params_file.write_text(quick_params_file("gd").read_text())
    template = tmp / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrated once, copied per side
    out: dict = {}
    try:
        if "scaling" in PARTS:
            # 1. a sweep of 6 CPU-bound trials, 2 workers vs 1 (each sweep starts its own workers: counted)
            def sweep_with(workers: int) -> float:
                with _env(MLFLOW_TRACKING_URI=_fresh_store(tmp, template), GRADLAB_RESULTS=tmp / f"results-{workers}"):
                    start = time.perf_counter()
                    with redirect_stderr(StringIO()):
                        code = sweep("gd", GRID, TRIAL, seeds=SEEDS, workers=workers, params_file=params_file)
                    elapsed = time.perf_counter() - start
                assert code == 0, f"sweep with {workers} workers exited {code}"
                return elapsed

            one, two = [], []
            load_before = os.getloadavg()[0]
            for _ in range(ROUNDS):
                one.append(sweep_with(1))
                two.append(sweep_with(2))
            n = 3 * SEEDS
            s1, s2 = statistics.median(one), statistics.median(two)
            out["sweep_trials_per_s_2_workers_vs_1"] = {
                "subject_s": s2,
                "reference_s": s1,
                "trials": n,
                "trials_per_s_1_worker": n / s1,
                "trials_per_s_2_workers": n / s2,
                "ratio": s1 / s2,
                "rounds": ROUNDS,
                "cores": len(os.sched_getaffinity(0)),
                "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
                "target": ">= 1.7 (trials/s, 2 workers over 1)",
            }

        if "tracking" in PARTS:
            # 2. one trial with MLflow logging (run_stage into sqlite) vs the same work with a null tracker
            seed_everything(0)
            sets = TRIAL
            study = get_stage("gd").load()

            def with_tracking() -> None:
                with _env(MLFLOW_TRACKING_URI=_fresh_store(tmp, template), GRADLAB_RESULTS=tmp / "results-t"):
                    with redirect_stderr(StringIO()):
                        assert run_stage("gd", sets, params_file, out_dir=tmp / "trial-tracked") == 0

            def without_tracking() -> None:
                freeze_imports()  # the process set-up run_stage does (once per process)
                params = resolve_params("gd", sets, params_file)
                seed_everything(int(params.seed))
                out_dir = tmp / "trial-untracked"
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir()
                ctx = StageContext("gd", params, out_dir, _NullTracker(), _NullRun(), tmp / "ck", progress=False)
                metrics = study(params, ctx)
                write_json(out_dir / "metrics.json", metrics)
                flatten(metrics)

            with_tracking()  # warm-up: imports, caches
            without_tracking()
            walls = {"with": [], "without": []}
            cpus = {"with": [], "without": []}
            for _ in range(ROUNDS):
                for side, fn in (("with", with_tracking), ("without", without_tracking)):
                    w, c = time.perf_counter(), time.process_time()
                    fn()
                    walls[side].append(time.perf_counter() - w)
                    cpus[side].append(time.process_time() - c)
            ww, wo = statistics.median(walls["with"]), statistics.median(walls["without"])
            cw, co = statistics.median(cpus["with"]), statistics.median(cpus["without"])
            out["trial_with_mlflow_vs_without"] = {
                "subject_s": ww,
                "reference_s": wo,
                "ratio": ww / wo,
                "overhead_wall": ww / wo - 1,
                "cpu_subject_s": cw,
                "cpu_reference_s": co,
                "overhead_cpu": cw / co - 1,
                "rounds": ROUNDS,
                "target": "<= 1.05 (tracking overhead <= 5 %)",
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
