"""`gradlab metrics`: headline numbers as one vertical table (intervals beside their values), `--diff REV`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gradlab.cli import main
from gradlab.config import flatten
from gradlab.headline import read_metrics
from gradlab.metrics_table import WIDTH, rows

ROOT = Path(__file__).resolve().parents[1]


def test_an_interval_joins_the_row_of_its_value_and_an_orphan_interval_keeps_a_row():
    flat = {
        "a.x_mean": 0.123456,
        "a.x_ci_low": 0.1,
        "a.x_ci_high": 0.2,
        "b.y_ci_low": -1.0,
        "b.y_ci_high": 1.0,
        "c.flag": True,
        "c.n": 10,
    }
    assert rows(flat) == [
        ("a.x_mean", "0.1235", "[0.1, 0.2]"),
        ("b.y_ci", "", "[-1, 1]"),
        ("c.flag", "True", ""),
        ("c.n", "10", ""),
    ]


def test_every_committed_stage_fits_120_columns_with_every_key_once(monkeypatch, capsys):
    monkeypatch.setenv("GRADLAB_RESULTS", str(ROOT / "results"))
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in out) <= WIDTH
    shown = {(line.split()[0], line.split()[1]) for line in out[1:]}
    for stage in {s for s, _ in shown}:
        keys = dict(flatten(read_metrics(ROOT / "results" / stage / "metrics.json")))
        for key in keys:
            if key.endswith(("_ci_low", "_ci_high")):
                continue
            assert (stage, key) in shown


def _repo(tmp_path: Path, metrics: dict) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    folder = tmp_path / "results" / "gd"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "m"], check=True)
    return tmp_path / "results"


def test_diff_lists_changed_added_and_removed_keys_only(tmp_path, monkeypatch, capsys):
    results = _repo(tmp_path, {"a": {"same": 1, "moved": 0.5, "gone": 2}})
    (results / "gd" / "metrics.json").write_text(json.dumps({"a": {"same": 1, "moved": 0.25, "new": True}}))
    monkeypatch.setenv("GRADLAB_RESULTS", str(results))
    assert main(["metrics", "gd", "--diff", "HEAD"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["stage", "key", "HEAD", "workspace"],
        ["gd", "a.moved", "0.5", "0.25"],
        ["gd", "a.gone", "2", "-"],
        ["gd", "a.new", "-", "True"],
    ]
    (results / "gd" / "metrics.json").write_text(json.dumps({"a": {"same": 1, "moved": 0.5, "gone": 2}}))
    assert main(["metrics", "gd", "--diff", "HEAD"]) == 0
    assert capsys.readouterr().out.strip() == "no headline number differs from HEAD"


def test_bad_stage_and_bad_revision_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRADLAB_RESULTS", str(_repo(tmp_path, {"x": 1})))
    assert main(["metrics", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stage: 'nope' is not a stage; allowed: gd, ")
    assert main(["metrics", "gd", "--diff", "no-such-rev"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --diff: 'no-such-rev' is not a git revision of {tmp_path}"]


def test_diff_reads_a_revision_from_before_the_stage_name_was_the_top_key(tmp_path, monkeypatch, capsys):
    results = _repo(tmp_path, {"a": {"same": 1, "moved": 0.5}})  # the old layout: the headline at the top
    (results / "gd" / "metrics.json").write_text(json.dumps({"gd": {"a": {"same": 1, "moved": 0.25}}}))
    monkeypatch.setenv("GRADLAB_RESULTS", str(results))
    assert main(["metrics", "gd", "--diff", "HEAD"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [["stage", "key", "HEAD", "workspace"], ["gd", "a.moved", "0.5", "0.25"]]
