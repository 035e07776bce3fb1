"""Write the analysis notebooks (outputs stripped) from the cell sources below.

Run `python tools/make_notebooks.py` after editing a notebook's cells here; the
notebooks in notebooks/ are what users open, this file is their source.
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = '''import json, os
from pathlib import Path

import mlflow
import pandas as pd
import matplotlib.pyplot as plt

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RESULTS = Path(os.environ.get("GRADLAB_RESULTS", ROOT / "results"))
mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"))
print("results:", RESULTS, "| tracking:", mlflow.get_tracking_uri())'''


def metrics_cell(stage: str) -> str:
    return f'''metrics = json.loads((RESULTS / "{stage}" / "metrics.json").read_text())
print((RESULTS / "{stage}" / "summary.md").read_text())
pd.json_normalize(metrics).T.rename(columns={{0: "value"}})'''


def runs_cell(stage: str) -> str:
    return f'''runs = mlflow.search_runs(experiment_names=["gradlab/{stage}"])
parents = runs[runs["tags.mlflow.parentRunId"].isna()] if "tags.mlflow.parentRunId" in runs else runs
latest = parents.sort_values("start_time").iloc[-1]
children = runs[runs.get("tags.mlflow.parentRunId") == latest.run_id]
children[["tags.mlflow.runName", "status"]].head(20)'''


NOTEBOOKS = {
    "00_overview.ipynb": [
        ("md", "# gradlab: overview\n\nEvery stage's headline metrics and its MLflow runs. "
               "Set `GRADLAB_RESULTS` / `MLFLOW_TRACKING_URI` to look at another run of the pipeline."),
        ("code", SETUP),
        ("code", '''rows = []
for path in sorted(RESULTS.glob("*/metrics.json")):
    flat = pd.json_normalize(json.loads(path.read_text())).T[0]
    rows.append({"stage": path.parent.name, "metrics": len(flat)})
pd.DataFrame(rows)'''),
        ("code", '''exps = mlflow.search_experiments(filter_string="name LIKE 'gradlab/%'")
summary = []
for e in exps:
    r = mlflow.search_runs([e.experiment_id])
    summary.append({"experiment": e.name, "runs": len(r), "statuses": r["status"].value_counts().to_dict() if len(r) else {}})
pd.DataFrame(summary)'''),
        ("md", "Explore further: `mlflow.search_runs(experiment_names=['gradlab/gd'], filter_string=\"metrics.`train/loss` < 0.01\")`."),
    ],
    "gd.ipynb": [
        ("md", "# gd: why subtract step x gradient, and which learning rates diverge?"),
        ("code", SETUP),
        ("code", metrics_cell("gd")),
        ("code", '''curves = pd.read_csv(RESULTS / "gd" / "plots" / "loss_per_step.csv")
fig, ax = plt.subplots(figsize=(6, 4))
for rule, g in curves.groupby("rule"):
    ax.plot(g["step"], g["loss"], label=rule)
ax.set(yscale="log", xlabel="step", ylabel="training loss (MSE)", title="Update rules on least squares")
ax.legend();'''),
        ("code", '''sweep = pd.read_csv(RESULTS / "gd" / "plots" / "final_loss_vs_lr.csv")
fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(sweep["lr"], sweep["final_loss_mean"],
            yerr=[sweep["final_loss_mean"] - sweep["final_loss_ci_low"], sweep["final_loss_ci_high"] - sweep["final_loss_mean"]],
            fmt="o-")
ax.axvline(metrics["mlp"]["best_lr"], ls="--", color="k", label="best lr")
ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final loss (mean, 95% CI)", title="ReLU network")
ax.legend();'''),
        ("code", runs_cell("gd")),
        ("code", '''client = mlflow.tracking.MlflowClient()
gradient = children[children["tags.mlflow.runName"] == "gradient__seed0"].run_id.iloc[0]
history = pd.DataFrame([(m.step, m.value) for m in client.get_metric_history(gradient, "train/loss")], columns=["step", "loss"])
history.tail()'''),
    ],
}


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    nbf.write(nb, HERE / name)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        write(name, cells)


if __name__ == "__main__":
    main()
