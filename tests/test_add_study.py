"""Adding a study is the README's "Adding a study", nothing more: copy a study folder under a new name, add its
``params.yaml`` section, its ``dvc.yaml`` stage (and its results among the report stage's deps) and its
``pipelines/<stage>.py`` (and a docs page). In a temporary copy of the project, the copy of ``input_grad`` (the
cheapest quick run) as ``toy`` is then listed by ``gradlab stages``, runs with ``--quick`` (its tiny.yaml), has its
section in the report and its block in its docs page (its report.py), the DVC plot templates its stage names,
and ``notebooks/toy.ipynb`` (its notebook.md): all found in its folder or its stage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

SOURCE, NEW = "input_grad", "toy"
FOLDER = f"src/gradlab/studies/{NEW}"


def _project(dest: Path) -> None:
    """What a study's commands read: the package, the tools, the pipeline, the docs pages."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "tools", "pipelines", "docs"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    for rel in ("params.yaml", "dvc.yaml"):
        shutil.copy2(ROOT / rel, dest / rel)


def _rename(text: str) -> str:
    return re.sub(rf"\b{SOURCE}\b", NEW, text)  # the package path, the stage name, its results' paths


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _add_study(root: Path) -> None:
    """The README's steps, done as a user would."""
    # 1. copy the folder, its name in it replaced
    shutil.copytree(root / f"src/gradlab/studies/{SOURCE}", root / FOLDER, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root / FOLDER).rglob("*"):
        if path.is_file():
            path.write_text(_rename(path.read_text()))
    # 2. its params.yaml section
    section = yaml.safe_load((root / "params.yaml").read_text())[SOURCE]
    with open(root / "params.yaml", "a") as f:
        f.write("\n" + yaml.safe_dump({NEW: section}, sort_keys=False))
    # 3. its dvc.yaml stage, and its results among the report's deps
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc["stages"][NEW] = yaml.safe_load(_rename(yaml.safe_dump(dvc["stages"][SOURCE])))
    # a plot by a field no other stage draws by: its template comes from this block alone
    dvc["stages"][NEW]["plots"].append({f"results/{NEW}/plots/by_widget.csv": {"template": "points_by_widget_logy"}})
    report = dvc["stages"]["report"]["deps"]
    report += [_rename(d) for d in report if isinstance(d, str) and d.startswith(f"results/{SOURCE}/")]
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    # 4. its DVC entry point
    (root / f"pipelines/{NEW}.py").write_text(_rename((root / f"pipelines/{SOURCE}.py").read_text()))
    # and a docs page
    (root / f"docs/studies/{NEW}.md").write_text(_rename((root / f"docs/studies/{SOURCE}.md").read_text()))


@pytest.mark.slow
def test_a_copied_study_is_found_runs_quick_and_gets_its_report_section_and_notebook(tmp_path, _template_store):
    root = tmp_path / "project"
    _project(root)
    before = _snapshot(root)
    _add_study(root)
    after = _snapshot(root)
    edited = sorted(p for p in after if before.get(p) != after[p] and not p.startswith((f"{FOLDER}/", "docs/")))
    assert edited == ["dvc.yaml", "params.yaml", f"pipelines/{NEW}.py"], edited

    shutil.copy(_template_store, tmp_path / "mlflow.db")
    env = dict(
        os.environ,
        PYTHONPATH=str(root / "src"),  # the project's copy of gradlab, not the checkout's
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        GRADLAB_RESULTS=str(root / "results"),
        GRADLAB_REPORTS=str(root / "reports"),
    )
    env.pop("DVC_ROOT", None)

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done.stdout

    listed = run(sys.executable, "-m", "gradlab", "stages")
    assert re.search(rf"^{NEW}\s", listed, re.M) and re.search(rf"^{SOURCE}\s", listed, re.M), listed

    run(sys.executable, "-m", "gradlab", "run", NEW, "--quick")
    quick = root / "results" / "quick" / NEW
    assert (quick / "stats.json").is_file() and (quick / "summary.md").is_file()

    # the report of those results (copied where a full run writes them), and the block of the docs page
    shutil.copytree(quick, root / "results" / NEW)
    run(sys.executable, "-m", "gradlab", "report")
    report = (root / "reports" / "REPORT.md").read_text()
    assert f"(`{NEW}`)\n" in report and f"read from `results/{NEW}/stats.json`" in report, report[:3000]
    page = (root / f"docs/studies/{NEW}.md").read_text()
    assert f"Read from `results/{NEW}/stats.json` (SHA-256" in page

    run(sys.executable, "tools/make_plot_templates.py")  # the templates its dvc.yaml plots name
    named = {p["template"] for entry in yaml.safe_load((root / "dvc.yaml").read_text())["stages"][NEW]["plots"]
             for p in entry.values() if "template" in p}  # fmt: skip
    assert "points_by_widget_logy" in named, named
    assert all((root / ".dvc" / "plots" / f"{t}.json").is_file() for t in named), named
    widget = (root / ".dvc" / "plots" / "points_by_widget_logy.json").read_text()
    assert '"field": "widget"' in widget and '"type": "log"' in widget

    run(sys.executable, "tools/make_notebooks.py")
    notebook = (root / "notebooks" / f"{NEW}.ipynb").read_text()
    assert f'RESULTS / \\"{NEW}\\"' in notebook and f'\\"{SOURCE}\\"' not in notebook


def test_every_study_folder_holds_what_a_study_owns():
    """What the copy above relies on holds for every study: its stages (but presets) have a report section and
    quick parameters, and the study a notebook source and a docs page."""
    from gradlab.report.sections import by_study, sections
    from gradlab.stages import all_stages, quick_stages, stages_of, studies, study_folder

    pipeline = {name for name, stage in all_stages().items() if not stage.preset}
    assert set(sections()) == pipeline == set(quick_stages())
    for study in studies():
        assert (study_folder(study) / "notebook.md").is_file(), f"{study}: no notebook.md"
        assert (ROOT / "docs" / "studies" / f"{study}.md").is_file(), f"{study}: no docs page"
        assert set(by_study()[study]) == {s for s in stages_of(study) if s in pipeline}
