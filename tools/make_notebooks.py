"""Write the analysis notebooks in notebooks/ (outputs stripped) from their sources, jupytext markdown files:

- ``notebooks/<study>.ipynb`` from ``src/gradlab/studies/<study>/notebook.md``, for every study that has one;
- ``notebooks/00_overview.ipynb`` from ``tools/notebooks/00_overview.md``.

A source is a readable page: markdown cells as text, code cells as ```python blocks. A code cell whose whole
source is one of these lines stands for the cells every notebook shares:

- ``# gradlab: setup``: the imports, ``RESULTS`` and the tracking URI;
- ``# gradlab: metrics STAGE``: the stage's summary.md and every number of its stats.json;
- ``# gradlab: runs STAGE``: the stage's newest finished MLflow run and its trials (``children``);
- ``# gradlab: from your code``: the ```python blocks of the "From your code" section of
  ``docs/studies/<study>.md`` (one source for the page and the notebook; tests/test_docs_blocks.py runs them).

Run ``python tools/make_notebooks.py`` after editing a source; tests/test_notebooks.py fails while notebooks/
differs from what it writes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jupytext
import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "notebooks"
OVERVIEW = ROOT / "tools" / "notebooks" / "00_overview.md"
MARK = "# gradlab: "

SETUP = """import json, os
from pathlib import Path

import mlflow
import pandas as pd
import matplotlib.pyplot as plt
from gradlab.headline import read_metrics

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RESULTS = Path(os.environ.get("GRADLAB_RESULTS", ROOT / "results"))
mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"))
print("results:", RESULTS, "| tracking:", mlflow.get_tracking_uri())"""


def metrics_cell(stage: str) -> str:
    return f'''folder = RESULTS / "{stage}"  # stats.json: every number; metrics.json: the headline (all, before stats.json)
metrics = json.loads((folder / "stats.json").read_text()) if (folder / "stats.json").exists() else read_metrics(folder / "metrics.json")
print((RESULTS / "{stage}" / "summary.md").read_text())
pd.json_normalize(metrics).T.rename(columns={{0: "value"}})'''


def runs_cell(stage: str) -> str:
    return f"""from gradlab.browse import latest_stage_run

latest = latest_stage_run("{stage}", mlflow.get_tracking_uri())  # newest FINISHED stage run: not a sweep, not --quick
if latest is None:
    raise LookupError(f"no finished {stage} run in {{mlflow.get_tracking_uri()}} (--quick runs do not count): dvc repro {stage}")
print("stage run:", latest.info.run_name, latest.info.run_id)
runs = mlflow.search_runs(experiment_names=["gradlab/{stage}"])
children = runs[runs["tags.mlflow.parentRunId"] == latest.info.run_id]  # one per trial
children[["tags.mlflow.runName", "status"]].head(20)"""


def from_your_code(study: str) -> list[tuple[str, str]]:
    """The code blocks of the "From your code" section of docs/studies/<study>.md, as notebook cells."""
    text = (ROOT / "docs" / "studies" / f"{study}.md").read_text()
    section = text.split("## From your code", 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0].rstrip() for part in section.split("```python\n")[1:]]
    note = f"## From your code\n\nThe tool on the asker's own code (from `docs/studies/{study}.md`, which says more)."
    return [("md", note)] + [("code", block) for block in blocks]


def expand(kind: str, source: str, study: str, where: Path) -> list[tuple[str, str]]:
    """One cell of a source, or the shared cells its ``# gradlab: ...`` line stands for."""
    if kind != "code" or not source.startswith(MARK) or "\n" in source:
        return [(kind, source)]
    what, _, stage = source.removeprefix(MARK).partition(" ")
    if source == f"{MARK}setup":
        return [("code", SETUP)]
    if what == "metrics" and stage:
        return [("code", metrics_cell(stage))]
    if what == "runs" and stage:
        return [("code", runs_cell(stage))]
    if source == f"{MARK}from your code":
        return from_your_code(study)
    raise ValueError(f"{where}: unknown cell {source!r} (setup, metrics STAGE, runs STAGE, from your code)")


def notebook(name: str, source: Path, study: str) -> nbf.NotebookNode:
    """The notebook ``name`` from its jupytext source; cell ids derived from the name (the same bytes each time)."""
    cells = []
    for cell in jupytext.reads(source.read_text(), fmt="md").cells:
        kind = "md" if cell.cell_type == "markdown" else "code"
        cells += expand(kind, cell.source, study, source)
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ids = [hashlib.sha1(f"{name}/{k}".encode()).hexdigest()[:8] for k in range(len(cells))]
    nb.cells = [
        nbf.v4.new_markdown_cell(src, id=i) if kind == "md" else nbf.v4.new_code_cell(src, id=i)
        for (kind, src), i in zip(cells, ids, strict=True)
    ]
    return nb


def sources(root: Path = ROOT) -> dict[str, tuple[Path, str]]:
    """Notebook name -> (its source, its study): the overview, then every study folder's notebook.md."""
    found = {"00_overview.ipynb": (root / OVERVIEW.relative_to(ROOT), "")}
    for path in sorted((root / "src" / "gradlab" / "studies").glob("*/notebook.md")):
        found[f"{path.parent.name}.ipynb"] = (path, path.parent.name)
    return found


def build() -> dict[str, str]:
    """Notebook name -> the text of notebooks/<name> as this writes it."""
    return {
        name: nbf.writes(notebook(name, source, study)).rstrip("\n") + "\n"
        for name, (source, study) in sources().items()
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, text in build().items():
        (HERE / name).write_text(text)


if __name__ == "__main__":
    main()
