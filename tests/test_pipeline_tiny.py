"""The whole pipeline on tiny parameters: determinism, the report's quoted numbers,
the notebooks, and `dvc plots show`."""

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
from gradlab.runner import run_stage
from gradlab.stages import all_stages

STAGES = [s for s in all_stages() if (ROOT / "tests" / "tiny" / f"{s}.yaml").exists()]


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory, _template_store):
    tmp = tmp_path_factory.mktemp("pipeline")
    shutil.copy(_template_store, tmp / "mlflow.db")
    params = tmp / "params.yaml"
    params.write_text("\n".join((ROOT / "tests" / "tiny" / f"{s}.yaml").read_text() for s in STAGES))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("GRADLAB_RESULTS", str(tmp / "results"))
        mp.delenv("DVC_ROOT", raising=False)
        for stage in STAGES:
            assert run_stage(stage, params_file=params) == 0, stage
        # a sweep after the stages: its parent is the newest top-level run of gradlab/gd, which notebooks
        # and the report must not mistake for the stage's run
        from gradlab.sweep import sweep

        assert sweep("gd", ["gd.mlp.hidden=4"], workers=1, params_file=params) == 0
        yield tmp, params


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_same_params_give_identical_metrics(tiny_pipeline, stage):
    tmp, params = tiny_pipeline
    again = tmp / "again" / stage
    assert run_stage(stage, params_file=params, out_dir=again) == 0
    assert (again / "metrics.json").read_text() == (tmp / "results" / stage / "metrics.json").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_metrics_json_is_the_rounded_headline_of_stats_json(tiny_pipeline, stage):
    from gradlab.config import flatten
    from gradlab.headline import round_sig

    tmp, _ = tiny_pipeline
    head = flatten(json.loads((tmp / "results" / stage / "metrics.json").read_text()))
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


@pytest.mark.slow
def test_dvc_plots_show_renders(tiny_pipeline, tmp_path):
    tmp, _ = tiny_pipeline
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(tmp / "results", repo / "results")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    out = subprocess.run([*dvc, "plots", "show", "-o", "plots_html"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    page = (repo / "plots_html" / "index.html").read_text()
    for stage in STAGES:
        assert f"results_{stage}_" in page or f"results/{stage}/" in page, stage
