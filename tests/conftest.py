"""Shared fixtures: a throw-away MLflow store and results folder per test; each tiny stage run once per session."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradlab.numerics import pin_environment

# the CPU numerics every entry point pins (gradlab.numerics), before any test imports NumPy or runs torch
_LOADED_TOO_EARLY = pin_environment()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory) -> Path:
    """An initialised (migrated) empty MLflow sqlite store, copied for each test: fast."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, _template_store) -> str:
    """MLFLOW_TRACKING_URI and GRADLAB_RESULTS pointed at a fresh temporary store and folder."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_template_store, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("GRADLAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri


def load_tool(name: str):
    """``tools/<name>.py`` imported as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def gradlab(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run the real `gradlab` command in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "gradlab.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def tiny_text(*stages: str) -> str:
    """The quick parameters of these stages: their studies' tiny.yaml (gradlab.stages.quick_params_file), joined."""
    from gradlab.stages import quick_params_file

    files = dict.fromkeys(quick_params_file(s) for s in stages)  # one file per study, in order
    return "\n".join(path.read_text() for path in files)


def tiny_params(tmp_path: Path, *stages: str) -> Path:
    """params.yaml in ``tmp_path`` made of the quick parameters of each stage (its study's tiny.yaml)."""
    return write_params(tmp_path, tiny_text(*stages))


class TinyRuns:
    """Each stage with quick parameters (its study's tiny.yaml), run once in this process, on demand, into
    one shared MLflow store and results folder: the end-to-end stage tests, the pipeline tests (report,
    notebooks, `dvc plots`) and the determinism tests read the same run instead of each running it again."""

    def __init__(self, root: Path, template: Path):
        self.root = root
        shutil.copy(template, root / "mlflow.db")
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.results = root / "results"
        from gradlab.stages import quick_stages

        self.stages = sorted(quick_stages())
        self.params = write_params(root, tiny_text(*self.stages))
        self.done: dict[str, int] = {}

    @contextlib.contextmanager
    def environment(self):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", self.uri)
            mp.setenv("GRADLAB_RESULTS", str(self.results))
            mp.delenv("DVC_ROOT", raising=False)
            mp.delenv("DVC_EXP_NAME", raising=False)
            yield

    def stage(self, name: str) -> Path:
        """results/<name> of the stage's one run (made now if it is the first to ask)."""
        if name not in self.done:
            from gradlab.runner import run_stage

            with self.environment():
                self.done[name] = run_stage(name, params_file=self.params)
        assert self.done[name] == 0, f"the tiny {name} stage exited {self.done[name]}"
        return self.results / name

    def stage_run(self, name: str):
        """The stage's own MLflow run (top level; not a sweep's parent, not a quick run)."""
        from gradlab.tracking import QUICK_TAG, Tracker

        self.stage(name)
        runs = Tracker(self.uri).runs(f"gradlab/{name}")
        parents = [
            r for r in runs
            if "mlflow.parentRunId" not in r.data.tags and "gradlab.sweep.role" not in r.data.tags
            and QUICK_TAG not in r.data.tags
        ]  # fmt: skip
        assert len(parents) == 1, [r.info.run_name for r in parents]
        return parents[0], runs


# Tests that start servers, clusters or signals and check how soon they answer or stop: `make test` runs them in a
# second, serial pass (-m serial) after the parallel one (-n 2 -m "not serial"). Beside a second worker on 2 busy
# cores, Ray's start-up timed out and `gradlab ui`'s port was still held after 10 s.
SERIAL_FILES = {"test_ui.py", "test_interrupt.py", "test_failing_stores.py"}
# Its trial takes the Ctrl-C inside a weakref callback more often than not (its log: "Exception ignored in ...
# WeakKeyDictionary ... KeyboardInterrupt"), where Python dropped it until gradlab.process re-sent dropped
# interrupts; it runs alone so that its 6-15 s trial is still running when the interrupt arrives.
SERIAL_TESTS = {"test_ctrl_c_kills_running_cancels_pending_and_resume_finishes"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (
            item.path.name in SERIAL_FILES
            or item.originalname in SERIAL_TESTS
            or re.search(r"(^|_)ray(_|$)", item.originalname)
        ):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, _template_store) -> TinyRuns:
    return TinyRuns(tmp_path_factory.mktemp("tiny-runs"), _template_store)
