"""gradlab.settings: every GRADLAB_* variable read once, with its documented default; bad values are bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

from gradlab.config import ConfigError
from gradlab.settings import DEFAULT_CURVE_POINTS, Settings, active, current


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s == Settings(
        results=tmp_path / "results",
        reports=tmp_path / "reports",
        curve_points=DEFAULT_CURVE_POINTS,
        workers=None,
        accelerator="cpu",
        tracking_uri=None,
    )
    assert s.cores() >= 1 and DEFAULT_CURVE_POINTS == 320


def test_values_from_the_environment():
    env = {
        "GRADLAB_RESULTS": "/r",
        "GRADLAB_REPORTS": "/p",
        "GRADLAB_CURVE_POINTS": "0",
        "GRADLAB_WORKERS": "3",
        "GRADLAB_ACCELERATOR": "gpu",
        "MLFLOW_TRACKING_URI": "http://h:5000",
    }
    s = Settings.from_env(env)
    assert (s.results, s.reports, s.curve_points, s.workers, s.accelerator, s.tracking_uri) == (
        Path("/r"), Path("/p"), 0, 3, "gpu", "http://h:5000",
    )  # fmt: skip
    assert s.cores() == 3
    with pytest.raises(AttributeError):
        s.workers = 1  # frozen


@pytest.mark.parametrize("key, value", [("GRADLAB_CURVE_POINTS", "1"), ("GRADLAB_CURVE_POINTS", "-5"),
                                        ("GRADLAB_WORKERS", "many")])  # fmt: skip
def test_bad_values_are_config_errors_naming_the_variable(key, value):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Settings.from_env({key: value})


def test_current_is_the_active_settings_else_the_environment(monkeypatch):
    monkeypatch.setenv("GRADLAB_WORKERS", "5")
    assert current().workers == 5
    mine = Settings.from_env({"GRADLAB_WORKERS": "2"})
    with active(mine):
        assert current() is mine
    assert current().workers == 5


def test_every_variable_the_code_reads_is_documented_in_the_readme():
    names = {n for f in (ROOT / "src").rglob("*.py") for n in re.findall(r"\bGRADLAB_[A-Z_]+\b", f.read_text())}
    assert {"GRADLAB_RESULTS", "GRADLAB_REPORTS", "GRADLAB_CURVE_POINTS", "GRADLAB_WORKERS"} <= names
    readme = (ROOT / "README.md").read_text()
    assert [n for n in sorted(names) if f"| `{n}` |" not in readme] == []
