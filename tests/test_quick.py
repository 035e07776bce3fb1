"""`gradlab run STAGE --quick`: every stage with quick parameters writes to results/quick/STAGE, and its
summary.md prints "n/a" rather than nan, None or inf (no numpy RuntimeWarning); and determinism: the same
parameters give the same metrics.json and stats.json bytes in another process, on other CPU kernels, with
another number of trial workers (the slow test does all of it with one run per stage).

How long a quick run takes is a speed figure, measured in bench/bench_quick.py (wall clock and CPU per stage
against the minute it is meant to take), not here: a test's machine may be slower or shared. The run's wall
and CPU seconds are printed (pytest -s).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradlab.stages import quick_stages

ROOT = Path(__file__).resolve().parents[1]
QUICK = sorted(quick_stages())
UNDEFINED = re.compile(r"\b(nan|None|inf)\b")  # "NaN" as the mdn study's subject is a word, not a value


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_every_pipeline_stage_but_the_presets_has_quick_parameters():
    from gradlab.stages import all_stages

    presets = {name for name, stage in all_stages().items() if stage.preset}  # long runs by design
    assert set(all_stages()) - presets == set(QUICK)


def test_quick_refuses_a_stage_without_quick_parameters_and_an_explicit_params_file(tmp_path, store):
    for args, message in [
        (["pg_pong_win"], "--quick: stage 'pg_pong_win' has no quick parameters; allowed: "),
        (["gd", "--params", "params.yaml.other"], "--quick: uses the study's tiny.yaml; leave out --params"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "gradlab", "run", *args, "--quick"], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr


# What another x86-64 machine changes on its own, set here by hand: torch's default (not AVX2) kernels, MKL's
# automatic code path, NumPy without its AVX2 loops, OpenBLAS's Sandy Bridge kernels, one trial worker. Without
# the pinning of gradlab.numerics (GRADLAB_NUMERICS=native) the first two alone change `gradlab run mdn --quick`'s
# stats.json (measured); with it, nothing may change.
OTHER_MACHINE = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "AUTO",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "GRADLAB_WORKERS": "1",
}
# spearman's own trial pool (spearman.workers, 1 in its quick parameters) at 2 here: its results must not
# depend on how many workers ran its trials
EXTRA = {"spearman": ["--set", "spearman.workers=2"]}


@pytest.mark.slow
@pytest.mark.parametrize("stage", QUICK)
def test_quick_run_has_no_undefined_numbers_and_the_same_bytes_on_other_kernels(
    stage, tmp_path, tiny_runs, _template_store
):
    """`gradlab run STAGE --quick` in a fresh process whose environment asks for other CPU kernels (and one trial
    worker): no RuntimeWarning, results/quick/STAGE only, a summary without nan/None/inf,
    and metrics.json and stats.json byte for byte those of the same parameters run in this process (the shared
    tiny run of conftest.TinyRuns, made with the native kernels and the default workers)."""
    reference = tiny_runs.stage(stage)
    results = tmp_path / "results"
    env = dict(os.environ, PYTHONWARNINGS="error::RuntimeWarning", GRADLAB_RESULTS=str(results))
    env.update(OTHER_MACHINE, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    shutil.copy(_template_store, tmp_path / "mlflow.db")
    cpu_before, start = _cpu_of_children(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradlab", "run", stage, "--quick", *EXTRA.get(stage, [])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=env,
    )
    wall, cpu = time.perf_counter() - start, _cpu_of_children() - cpu_before
    load = os.getloadavg()[0]
    print(f"\n{stage} --quick: wall {wall:.1f} s, CPU {cpu:.1f} s, load average {load:.1f} on {os.cpu_count()} cores")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "RuntimeWarning" not in done.stderr, done.stderr[-4000:]
    out = results / "quick" / stage
    summary = (out / "summary.md").read_text()
    from gradlab.doctor import CAUSES

    for cause in CAUSES.values():  # the NaN doctor's explanations and fixes are prose ("log(0) = -inf")
        summary = summary.replace(cause.why, "").replace(cause.fix, "")
    found = sorted({m.group(0) for m in UNDEFINED.finditer(summary)})
    assert not found, f"{stage}: summary.md prints {found}:\n" + "\n".join(
        line for line in summary.splitlines() if UNDEFINED.search(line)
    )
    assert (out / "metrics.json").exists() and not (results / stage).exists()  # never the stage's own results
    for name in ("metrics.json", "stats.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
