"""Write the analysis notebooks (outputs stripped) from the cell sources below.

Run `python tools/make_notebooks.py` after editing a notebook's cells here; the
notebooks in notebooks/ are what users open, this file is their source.
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = """import json, os
from pathlib import Path

import mlflow
import pandas as pd
import matplotlib.pyplot as plt

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RESULTS = Path(os.environ.get("GRADLAB_RESULTS", ROOT / "results"))
mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"))
print("results:", RESULTS, "| tracking:", mlflow.get_tracking_uri())"""


def metrics_cell(stage: str) -> str:
    return f'''folder = RESULTS / "{stage}"  # stats.json: every number; metrics.json: the headline (all, before stats.json)
metrics = json.loads((folder / "stats.json" if (folder / "stats.json").exists() else folder / "metrics.json").read_text())
print((RESULTS / "{stage}" / "summary.md").read_text())
pd.json_normalize(metrics).T.rename(columns={{0: "value"}})'''


def runs_cell(stage: str) -> str:
    return f"""from gradlab.browse import latest_stage_run

latest = latest_stage_run("{stage}", mlflow.get_tracking_uri())  # newest FINISHED stage run: not a sweep, not a failure
print("stage run:", latest.info.run_name, latest.info.run_id)
runs = mlflow.search_runs(experiment_names=["gradlab/{stage}"])
children = runs[runs["tags.mlflow.parentRunId"] == latest.info.run_id]  # one per trial
children[["tags.mlflow.runName", "status"]].head(20)"""


NOTEBOOKS = {
    "00_overview.ipynb": [
        (
            "md",
            "# gradlab: overview\n\nEvery stage's headline metrics and its MLflow runs. "
            "Set `GRADLAB_RESULTS` / `MLFLOW_TRACKING_URI` to look at another run of the pipeline.",
        ),
        ("code", SETUP),
        (
            "code",
            """rows = []
for path in sorted(RESULTS.glob("*/metrics.json")):
    flat = pd.json_normalize(json.loads(path.read_text())).T[0]
    rows.append({"stage": path.parent.name, "metrics": len(flat)})
pd.DataFrame(rows)""",
        ),
        (
            "code",
            """exps = mlflow.search_experiments(filter_string="name LIKE 'gradlab/%'")
summary = []
for e in exps:
    r = mlflow.search_runs([e.experiment_id])
    summary.append({"experiment": e.name, "runs": len(r), "statuses": r["status"].value_counts().to_dict() if len(r) else {}})
pd.DataFrame(summary)""",
        ),
        (
            "md",
            "Explore further: `mlflow.search_runs(experiment_names=['gradlab/gd'], filter_string=\"metrics.`train/loss` < 0.01\")`.",
        ),
    ],
    "gd.ipynb": [
        ("md", "# gd: why subtract step x gradient, and which learning rates diverge?"),
        ("code", SETUP),
        ("code", metrics_cell("gd")),
        (
            "code",
            """curves = pd.read_csv(RESULTS / "gd" / "plots" / "loss_per_step.csv")
fig, ax = plt.subplots(figsize=(6, 4))
for rule, g in curves.groupby("rule"):
    ax.plot(g["step"], g["loss"], label=rule)
ax.set(yscale="log", xlabel="step", ylabel="training loss (MSE)", title="Update rules on least squares")
ax.legend();""",
        ),
        (
            "code",
            """sweep = pd.read_csv(RESULTS / "gd" / "plots" / "final_loss_vs_lr.csv")
fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(sweep["lr"], sweep["final_loss_mean"],
            yerr=[sweep["final_loss_mean"] - sweep["final_loss_ci_low"], sweep["final_loss_ci_high"] - sweep["final_loss_mean"]],
            fmt="o-")
ax.axvline(metrics["mlp"]["best_lr"], ls="--", color="k", label="best lr")
ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final loss (mean, 95% CI)", title="ReLU network")
ax.legend();""",
        ),
        ("code", runs_cell("gd")),
        (
            "code",
            """client = mlflow.tracking.MlflowClient()
gradient = children[children["tags.mlflow.runName"] == "gradient__seed0"].run_id.iloc[0]
history = pd.DataFrame([(m.step, m.value) for m in client.get_metric_history(gradient, "train/loss")], columns=["step", "loss"])
history.tail()""",
        ),
    ],
    "mdn.ipynb": [
        ("md", "# mdn: why the mixture density network's NLL turns NaN, even at learning rate 0"),
        ("code", SETUP),
        ("code", metrics_cell("mdn")),
        (
            "code",
            """trials = pd.read_csv(RESULTS / "mdn" / "trials.csv")
factors = ["mixture", "sigma", "target_shape", "lr", "optimizer", "grad_clip", "dtype", "batchnorm"]
pd.concat({f: trials.groupby(f)["diverged"].mean() for f in factors}).rename("failure rate").to_frame()""",
        ),
        (
            "code",
            """heat = trials.pivot_table(index="mixture", columns="sigma", values="diverged", aggfunc="mean")
fig, ax = plt.subplots(figsize=(5, 3))
im = ax.imshow(heat.values, vmin=0, vmax=1, cmap="viridis")
ax.set(xticks=range(len(heat.columns)), xticklabels=heat.columns, yticks=range(len(heat.index)), yticklabels=heat.index,
       title="failure rate by mixture x sigma")
fig.colorbar(im, ax=ax, label="fraction of trials diverged");""",
        ),
        (
            "code",
            """lr0 = trials[trials["lr"] == 0]
lr0.groupby(["mixture", "sigma"])[["diverged", "weights_nonfinite", "fixed_nonfinite_batches"]].sum()""",
        ),
        ("code", runs_cell("mdn")),
    ],
    "input_grad.ipynb": [
        ("md", "# input_grad: per-sample gradients with respect to the inputs"),
        ("code", SETUP),
        ("code", metrics_cell("input_grad")),
        (
            "code",
            """t = pd.read_csv(RESULTS / "input_grad" / "timings.csv")
ok = t[t["status"] == "ok"]
fig, ax = plt.subplots(figsize=(6, 4))
for method, g in ok.groupby("method"):
    ax.plot(g["n"], g["seconds"], "o-", label=method)
ax.set(xscale="log", yscale="log", xlabel="N (samples)", ylabel="seconds per call", title="Cost of each method")
ax.legend();
t[t["status"] != "ok"][["method", "n", "status", "note"]]""",
        ),
        ("code", """pd.read_csv(RESULTS / "input_grad" / "batchnorm.csv").head(10)"""),
        ("code", runs_cell("input_grad")),
    ],
    "spearman.ipynb": [
        ("md", "# spearman: optimising matrices for a rank correlation"),
        ("code", SETUP),
        ("code", metrics_cell("spearman")),
        (
            "code",
            """runs = pd.read_csv(RESULTS / "spearman" / "runs.csv")
runs.groupby(["method", "n"])[["final_spearman", "evaluations", "evals_to_099"]].median()""",
        ),
        (
            "code",
            """curve = pd.read_csv(sorted((RESULTS / "spearman" / "plots").glob("spearman_vs_evals_n*.csv"))[-1])
curve.head()""",
        ),
        (
            "code",
            """import numpy as np
from scipy.stats import spearmanr
from gradlab.studies.spearman.derivation import Derivation  # recompute a saved result from its matrices
path = sorted((RESULTS / "spearman" / "final").glob("soft_rank_n*_seed0.npz"))[0]
saved = np.load(path)
list1, list2 = Derivation().numpy(saved["v"], saved["freq_m"])
print(path.name, "spearmanr from the saved matrices:", spearmanr(list1, list2).statistic)""",
        ),
    ],
    "pg.ipynb": [
        ("md", "# pg_cartpole / pg_pong: the sign of the REINFORCE loss"),
        ("code", SETUP),
        ("code", metrics_cell("pg_cartpole")),
        (
            "code",
            """ep = pd.read_csv(RESULTS / "pg_cartpole" / "episodes.csv")
fig, ax = plt.subplots(figsize=(7, 4))
for variant, g in ep.groupby("variant"):
    curve = g.groupby("episode")["return"].mean().rolling(20, min_periods=1).mean()
    ax.plot(curve.index, curve.values, label=variant)
ax.set(xlabel="episode", ylabel="return (mean over seeds, 20-episode average)", title="CartPole-v1")
ax.legend();""",
        ),
        (
            "code",
            """m = json.loads((RESULTS / "pg_cartpole" / "metrics.json").read_text())
pd.DataFrame({v: {k: r[k] for k in ("final_return_mean", "probe_corr", "p_vs_correct")} for v, r in m["variants"].items()}).T""",
        ),
        ("code", metrics_cell("pg_pong")),
        ("md", "Beating Pong's built-in AI: the win preset's running mean of the last 100 games, per seed."),
        (
            "code",
            """win = RESULTS / "pg_pong_win" / "episodes.csv"
if win.exists():
    ep = pd.read_csv(win)
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed, g in ep.groupby("seed"):
        ax.plot(g["episode"] + 1, g["return_mean100"], label=f"seed {seed}")
    ax.axhline(0, color="black", lw=0.8, ls="--")
    ax.set(xlabel="game", ylabel="mean return of the last 100 games (points)", title="pg_pong_win")
    ax.legend()
else:
    print("no results/pg_pong_win here: gradlab run pg_pong_win --params presets/pg_pong_win.yaml")""",
        ),
        ("code", runs_cell("pg_cartpole")),
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
