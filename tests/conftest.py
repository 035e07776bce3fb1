"""Shared fixtures: a throw-away MLflow store and results folder per test."""

from __future__ import annotations

import os
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


def tiny_params(tmp_path: Path, *stages: str) -> Path:
    """params.yaml in ``tmp_path`` made of tests/tiny/<stage>.yaml for each stage."""
    text = "\n".join((ROOT / "tests" / "tiny" / f"{s}.yaml").read_text() for s in stages)
    return write_params(tmp_path, text)
