"""The whole pipeline on tiny parameters: headline metrics, the report's quoted numbers, the notebooks,
`dvc plots show` and the MLflow UI (determinism: tests/test_quick.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from gradlab.report import run_report
from gradlab.report.quotes import format_value, lookup
from gradlab.stages import quick_stages

STAGES = quick_stages()


# the sweep's one trial made smaller still (it only has to leave a sweep parent in the store)
SWEEP_SETS = ["gd.threshold.steps=50", "gd.rules.steps=20", "gd.mlp.steps=5", "gd.seeds=1", "gd.sharpness.steps=5"]


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_runs):
    """Every stage on tiny parameters (conftest.TinyRuns: the same runs the stage tests read), then a sweep."""
    for stage in STAGES:
        tiny_runs.stage(stage)
    # a sweep after the stages: its parent is the newest top-level run of gradlab/gd, which notebooks
    # and the report must not mistake for the stage's run
    from gradlab.sweep import sweep

    with tiny_runs.environment():  # for the module's tests too: the report and the notebooks read this store
        assert sweep("gd", ["gd.mlp.hidden=4"], SWEEP_SETS, workers=1, params_file=tiny_runs.params) == 0
        yield tiny_runs.root, tiny_runs.params


# Determinism (same params -> the same metrics.json and stats.json bytes, in another process, on other CPU
# kernels, with one trial worker) is checked by tests/test_quick.py: each stage's `gradlab run --quick` there
# runs in a fresh process whose environment asks for other kernels and is compared with the run above.


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_metrics_json_is_the_rounded_headline_of_stats_json(tiny_pipeline, stage):
    from gradlab.config import flatten
    from gradlab.headline import round_sig

    tmp, _ = tiny_pipeline
    head = flatten(json.loads((tmp / "results" / stage / "metrics.json").read_text())[stage])
    full = flatten(json.loads((tmp / "results" / stage / "stats.json").read_text()))
    assert 0 < len(head) <= 100
    for key, value in head.items():
        assert isinstance(value, bool | int | float), (key, value)  # no strings, lists or nulls
        expected = full[key]
        assert value == (round_sig(expected) if isinstance(expected, float) else expected), key


@pytest.mark.slow
def test_report_quotes_only_numbers_from_metrics(tiny_pipeline):
    tmp, params = tiny_pipeline
    assert run_report(params, reports=tmp / "reports") == 0
    text = (tmp / "reports" / "REPORT.md").read_text()
    quotes = json.loads((tmp / "reports" / "quotes.json").read_text())
    assert quotes
    for q in quotes:
        metrics = json.loads((tmp / "results" / q["stage"] / "stats.json").read_text())
        value = lookup(metrics, q["key"])
        assert format_value(value, q["fmt"], q["scale"]) == q["text"], q
        assert q["text"] in text
    # and no number in the prose that is not one of those quotes (a typed-in result fails here)
    skip = ("Built from", "**Conditions.**", "![")
    prose = "\n".join(ln for ln in text.splitlines() if not ln.startswith(skip) and "](#" not in ln)  # not the contents
    prose = re.sub(r"`[^`]*`", " ", prose)  # code: `CE^R`, `nn.Linear(2,H)`
    for t in sorted({q["text"] for q in quotes}, key=len, reverse=True):
        prose = re.sub(r"(?<![\w.])" + re.escape(t) + r"(?![\d%]|\.\d)", " ", prose)
    prose = re.sub(r"n = \d+", " ", prose)  # problem sizes, from the metric keys (methods.<m>.n<size>)
    typed = [
        prose[max(0, m.start() - 40) : m.end() + 20]
        for m in re.finditer(r"(?<![A-Za-z_\d.])[-+]?\d+(?:\.\d+)?", prose)
        if m.group() not in {"0", "1", "2", "95"}  # log(0), ELU+1, 2/lambda_max, "95 % CI"
    ]
    assert not typed, typed
    for stage in STAGES:
        assert f"(`{stage}`)" in text, f"no section for {stage}"
    assert "No results yet" not in text and "lacks" not in text
    html = (tmp / "reports" / "report.html").read_text()
    assert "data:image/png;base64," in html and "../results/" not in html


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebook_executes(tiny_pipeline, notebook):
    import nbclient
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()


def _dvc_repo_with_results(tmp, repo):
    """A DVC project holding dvc.yaml, the plot templates, the offline page and a tiny pipeline's results."""
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(tmp / "results", repo / "results")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")


def _plot_definitions() -> dict[str, dict]:
    """Every data-series plot of dvc.yaml: its file -> its settings."""
    import yaml

    found = {}
    for spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for entry in spec.get("plots", []):
            path, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            if str(path).endswith(".csv"):
                found[path] = settings or {}
    return found


def embed_of(page, path: str):
    """The `dvc plots show` element that holds the plot of ``path``."""
    return page.locator(f"#{re.sub(r'[^A-Za-z0-9]', '_', path)}")


def _series_label(value: str) -> str:
    """What the templates show for a series value: a number to 4 significant digits, a name as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}"


def _series_key(label: str) -> tuple:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


@pytest.mark.slow
def test_dvc_plots_render_offline_with_one_series_per_variant(tiny_pipeline, tmp_path):
    """`dvc plots show` in a real browser with the network cut: every plot draws; a plot whose
    template colours by a column has one legend entry per value of that column; bar charts have bars."""
    import csv

    from browser import browser_page

    tmp, _ = tiny_pipeline
    repo = tmp_path / "repo"
    _dvc_repo_with_results(tmp, repo)
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", "plots_html"], cwd=repo, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    page_file = repo / "plots_html" / "index.html"
    text = page_file.read_text()
    assert "cdn.jsdelivr.net/npm/vega" not in text.replace("loads it from cdn.jsdelivr.net", "")
    for stage in STAGES:
        assert f"results_{stage}_" in text or f"results/{stage}/" in text, stage
    assert text.count("<img") >= len(list((repo / "results").glob("*/figures/*.png"))) > 0  # the figures too
    plots = _plot_definitions()
    with browser_page(offline=True) as page:
        page.goto(page_file.as_uri())
        page.wait_for_function(
            "n => document.querySelectorAll('.vega-embed svg.marks').length >= n", arg=len(plots), timeout=60_000
        )
        assert not page.errors, page.errors
        for path, settings in plots.items():
            template = settings.get("template", "")
            assert (ROOT / ".dvc" / "plots" / f"{template}.json").exists(), f"{path}: no template of ours"
            embed = embed_of(page, path)
            assert embed.locator("svg.marks").count() == 1, path
            with open(repo / path) as fh:
                rows = list(csv.DictReader(fh))
            # one revision: no "revision ..." legend (its layer's only label is empty)
            legend = [t for t in embed.locator("g.role-legend-label text").all_text_contents() if t]
            assert not any(t.startswith("revision") for t in legend), (path, legend)
            if template.startswith("lines_by_"):
                field = template.removeprefix("lines_by_").split("_log")[0]
                want = {_series_key(_series_label(r[field])) for r in rows}  # numbers compared as numbers
                assert sorted(map(_series_key, legend)) == sorted(want), (path, legend)
                assert embed.locator("g.data_marks path").count() == len(legend), path
            if template == "bars_h":
                assert embed.locator("g.mark-rect.data_marks path").count() == len(rows) > 0, path
            if template.startswith("points"):  # per-seed / per-trial values: one point each, no line through them
                assert embed.locator("g.mark-symbol.data_marks path").count() == len(rows) > 0, path
                assert embed.locator("g.mark-line.data_marks").count() == 0, path
        # mdn's validation NLL per seed is drawn as points grouped by model, not as a line across seed numbers
        stable = embed_of(page, "results/mdn/plots/stable_val_nll.csv")
        assert plots["results/mdn/plots/stable_val_nll.csv"]["x"] == "model"
        assert stable.locator("g.mark-symbol.data_marks path").count() > 0
        assert stable.locator("g.mark-line.data_marks").count() == 0


@pytest.mark.slow
def test_mlflow_ui_lists_the_stage_run_and_its_trials_in_a_browser(tiny_pipeline):
    """`gradlab ui` prints runs-table links; opened in Chromium, the table names the stage run and,
    expanded, its trial runs."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    from browser import browser_page

    tmp, _ = tiny_pipeline
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    gradlab = [sys.executable, "-m", "gradlab"]
    proc = subprocess.Popen(
        [*gradlab, "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        links = {}
        while "gradlab/gd" not in links:
            line = proc.stdout.readline()
            assert line, "gradlab ui printed no link for gradlab/gd"
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("gradlab/"):
                links[parts[0]] = parts[1]
        assert all(url.endswith("?workflowType=machine_learning") for url in links.values())
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "mlflow ui did not start"
                time.sleep(1)
        with browser_page() as page:
            page.goto(links["gradlab/gd"])
            page.wait_for_selector("text=matching runs", timeout=60_000)
            rows = page.locator(".ag-pinned-left-cols-container [role=row]")
            stage_row = rows.filter(has_text="gd · ")
            stage_row.first.wait_for(timeout=60_000)  # the table fills in after the run count shows
            expander = "button[data-component-id$='runnamecellrenderer.tsx_46']"  # MLflow 3.17's parent-run toggle
            stage_row.first.locator(expander).click()
            page.wait_for_selector("text=gradient__seed0", timeout=30_000)
            names = " ".join(rows.all_inner_texts())
            assert "threshold__seed0" in names and "gradient__seed0" in names, names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
