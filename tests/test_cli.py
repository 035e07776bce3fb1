"""The gradlab command: stages, bad input (exit 2, nothing written), ui defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import gradlab, tiny_params

from gradlab.cli import ui_command
from gradlab.tracking import Tracker


def test_stages_lists_questions():
    out = gradlab("stages")
    assert out.returncode == 0, out.stderr
    assert "gd" in out.stdout and "gradient" in out.stdout


def test_bad_key_exits_2_with_one_line_and_writes_nothing(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    out = gradlab("run", "gd", "--params", str(params), "--set", "gd.bogus=1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gd.bogus: unknown key")
    assert not (tmp_path / "results").exists()
    assert Tracker(store).client.get_experiment_by_name("gradlab/gd") is None


def test_pipeline_script_is_the_same_path(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    out = subprocess.run(
        [sys.executable, "pipelines/gd.py", "--params", str(params), "--set", "gd.seeds=-1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: gd.seeds: Input should be greater than or equal to 1 (got -1)"


def test_unknown_stage_exits_2():
    out = gradlab("run", "nope")
    assert out.returncode == 2 and "unknown stage" in out.stderr


def test_ui_binds_loopback_by_default(monkeypatch):
    """`gradlab ui` with no options: the real command's default host, not a value typed into the test."""
    import gradlab.cli as cli
    import gradlab.ui

    calls = []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/mlflow.db")
    monkeypatch.setattr(gradlab.ui, "serve", lambda host, port, uri, links, echo: calls.append((host, port, uri)) or 0)
    assert cli.main(["ui"]) == 0
    (call,) = calls
    argv = ui_command(*call)
    assert call == ("127.0.0.1", 5000, "sqlite:////x/mlflow.db")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--backend-store-uri") + 1] == "sqlite:////x/mlflow.db"


@pytest.mark.parametrize("args", [["stages"], ["--help"], ["run", "--help"]])
def test_listing_and_help_import_no_heavy_library(args):
    """`gradlab stages` and `gradlab --help` answer in well under a second: no torch, Lightning or MLflow."""
    code = (
        "import sys; from gradlab.cli import main; code = main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('torch', 'pytorch_lightning', 'lightning', 'mlflow') if m in sys.modules); "
        "print(heavy, file=sys.stderr); sys.exit(code or (3 if heavy else 0))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
