"""The README's `dvc exp show` recipes, run as written: each keeps the columns its comment promises, of its own
stage only, and the metric keys it keeps are the ones in that stage's committed metrics.json (issue 29.2)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from gradlab.config import flatten, load_yaml
from gradlab.headline import read_metrics

RECIPES = [line.strip() for line in (ROOT / "README.md").read_text().splitlines() if "dvc exp show --drop" in line]
DVC = shutil.which("dvc", path=str(Path(sys.executable).parent))


def _stage(recipe: str) -> str:
    return re.search(r"\^(\w+)\\\.", recipe).group(1)


def test_there_is_a_recipe_per_dvc_stage():
    import yaml

    with_metrics = {
        name for name, s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items() if s.get("metrics")
    }
    assert {_stage(r) for r in RECIPES} == with_metrics


@pytest.mark.skipif(DVC is None, reason="dvc is not installed beside this Python")
@pytest.mark.parametrize("recipe", RECIPES, ids=_stage)
def test_a_readme_recipe_keeps_its_stage_columns_and_only_those(recipe):
    stage = _stage(recipe)
    args = shlex.split(recipe)
    done = subprocess.run([DVC, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    header = next(line for line in done.stdout.splitlines() if line.startswith("|"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[0] == "Experiment" and len(columns) >= 3, columns
    assert all(c.startswith(f"{stage}.") for c in columns[1:]), columns  # no other stage's column
    metrics = {f"{stage}.{k}" for k in flatten(read_metrics(ROOT / "results" / stage / "metrics.json"))}
    kept = [c for c in columns[1:] if c in metrics]
    keep = re.search(r"--keep '([^']*)'", recipe).group(1)
    promised = {k for k in metrics if re.search(keep, k)}
    assert kept and set(kept) == promised, (sorted(promised - set(kept)), kept)


@pytest.mark.parametrize("stage", sorted({_stage(r) for r in RECIPES}))
def test_no_metric_of_a_stage_is_named_as_a_parameter(stage):
    """DVC names a column by its key alone only while no metric or parameter shares it (else `path:key`, which
    a recipe's `^stage\\.` cannot keep): a configuration count copied into the headline would collide."""
    params = set(flatten(load_yaml(ROOT / "params.yaml")))
    metrics = {f"{stage}.{k}" for k in flatten(read_metrics(ROOT / "results" / stage / "metrics.json"))}
    assert not metrics & params, sorted(metrics & params)
