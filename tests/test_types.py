"""The typed seam (issue 28.4): mypy passes on the plumbing and the study entry points, and every stage's run
function takes the params model its ``Stage`` declares.

mypy's scope and settings are ``[tool.mypy]`` in pyproject.toml; its cache is ``.mypy_cache/`` (git-ignored):
about 20-40 s on 2 cores without it, a few seconds with it. ``Stage.run`` is a string (finding stages must
not import torch), so the link from ``Stage[XParams]`` to ``run(p: XParams, ctx: StageContext)`` is checked
here, on the loaded functions, not by mypy.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import typing

import pytest
from conftest import ROOT

from gradlab.config import Params
from gradlab.context import StageContext
from gradlab.stages import Stage, all_stages


def test_mypy_passes_on_the_seam():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the dev extra: make install)")
    done = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )  # files and settings: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, f"mypy failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", sorted(all_stages()))
def test_each_stage_runs_its_own_params_model(name: str):
    stage: Stage = all_stages()[name]
    run = stage.load()
    hints = typing.get_type_hints(run)
    p, ctx = list(inspect.signature(run).parameters)[:2]
    model = hints.get(p)  # the stage's model or one it derives from (one run serves pg's presets)
    assert isinstance(model, type) and issubclass(stage.params, model) and model is not Params, (
        f"{stage.run}: {p} is {model}, the stage's model is {stage.params}"
    )
    assert hints.get(ctx) is StageContext, f"{stage.run}: {ctx} is {hints.get(ctx)}, not StageContext"
    assert hints.get("return") is dict, f"{stage.run}: returns {hints.get('return')}, not the metrics dict"
