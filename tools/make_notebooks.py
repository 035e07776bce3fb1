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
            "md",
            "## One step of each rule\n\nThe change of the loss after one step from w0 (left) and from every "
            "iterate of a gradient-descent run (right): only `w - step * gradient` keeps going downhill, and its "
            "step vanishes at the minimum (a fixed point).",
        ),
        (
            "code",
            """point = pd.read_csv(RESULTS / "gd" / "plots" / "delta_loss_vs_lr.csv")
run = pd.read_csv(RESULTS / "gd" / "plots" / "delta_loss_along_run.csv")
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
for rule, g in point.groupby("rule"):
    a.plot(g["lr"], g["delta_loss"], label=rule)
a.set(xscale="log", yscale="symlog", xlabel="learning rate", ylabel="loss change (symlog)", title="One step from w0")
for rule, g in run.groupby("rule"):
    b.plot(g["step"], g["delta_loss"], label=rule)
b.set(yscale="symlog", xlabel="iterate of the GD run", ylabel="loss change (symlog)", title="One step from each iterate")
a.legend(); b.legend();""",
        ),
        (
            "code",
            """stats = json.loads((RESULTS / "gd" / "stats.json").read_text())
fo = {rule: v for rule, v in stats["first_order"].items() if isinstance(v, dict)}
pd.DataFrame({rule: {"descent fraction (small lr)": v["descent_fraction"], "CI low": v["descent_fraction_ci_low"],
                     "CI high": v["descent_fraction_ci_high"], "near the minimum": v["near_optimum_fraction"]}
              for rule, v in fo.items()}).T""",
        ),
        (
            "code",
            """pd.Series(stats["scalar_line"]).to_frame("w0 - t*1")""",
        ),
        (
            "code",
            """curves = pd.read_csv(RESULTS / "gd" / "plots" / "loss_per_step.csv")
fig, ax = plt.subplots(figsize=(6, 4))
for rule, g in curves.groupby("rule"):
    ax.plot(g["step"], g["loss"], label=rule)
ax.set(yscale="log", xlabel="step", ylabel="training loss (MSE)", title="Update rules on least squares")
ax.legend();""",
        ),
        ("md", "## Divergence (final loss above the initial, or non-finite) and the edge of stability"),
        (
            "code",
            """sweep = pd.read_csv(RESULTS / "gd" / "plots" / "final_loss_vs_lr.csv")
sweep[["lr", "seeds", "diverged_seeds", "diverged", "final_loss_mean", "final_loss_ci_low", "final_loss_ci_high"]]""",
        ),
        (
            "code",
            """sharp = pd.read_csv(RESULTS / "gd" / "plots" / "sharpness.csv")
fig, ax = plt.subplots(figsize=(7, 4))
for (lr, seed), g in sharp.groupby(["lr", "seed"]):
    ax.plot(g["step"], g["sharpness"] * lr / 2, label=f"lr {lr:g}, seed {seed}")
ax.axhspan(stats["criteria"]["eos_low"], stats["criteria"]["eos_high"], color="grey", alpha=0.2)
ax.set(xlabel="step", ylabel="sharpness x lr / 2", title="Edge of stability: 1 = 2/lr")
ax.legend(fontsize=7)
pd.DataFrame({k: {f: v[f] for f in ("eos", "eos_seeds", "catapult", "catapult_seeds", "settled_ratio_mean")}
              for k, v in stats["sharpness"].items()}).T""",
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
        ("md", "The asker's path (`probs_log`) per condition: NaN trials, finite loss + NaN gradient, saturation."),
        (
            "code",
            """trials = pd.read_csv(RESULTS / "mdn" / "trials.csv")
asker = trials[trials["block"] == "asker"]
asker.groupby(["condition", "mixture", "lr"]).agg(
    trials=("diverged", "size"), nan_trials=("diverged", "sum"), finite_loss_nan_grad=("finite_loss_nan_grad", "sum"),
    weight_exactly_zero=("zero_weight_steps", lambda s: int((s > 0).sum())), max_logit_gap=("max_logit_gap", "max"),
    val_nll_median=("val_nll", "median"))""",
        ),
        ("md", "Learning rate 0: which inputs and settings give NaN, at which step, and with which cause."),
        (
            "code",
            """lr0 = trials[trials["block"] == "lr0"]
lr0.groupby(["condition", "sigma", "batchnorm", "mixture"]).agg(
    trials=("diverged", "size"), nan_trials=("diverged", "sum"), first_step_min=("first_nonfinite_step", "min"),
    first_step_max=("first_nonfinite_step", "max"), causes=("cause", lambda c: ", ".join(sorted(set(c.dropna())))))""",
        ),
        ("md", "Symptom -> cause -> fix, built from the trials."),
        (
            "code",
            """pd.read_csv(RESULTS / "mdn" / "symptoms.csv")[["symptom", "cause", "trials", "trials_lr0", "fix"]]""",
        ),
        ("md", "The stable loss against a single Gaussian and the marginal, per seed (validation NLL, nats)."),
        (
            "code",
            """nll = pd.read_csv(RESULTS / "mdn" / "plots" / "stable_val_nll.csv").pivot(index="seed", columns="model", values="val_nll")
print(nll.describe().loc[["mean", "std", "min", "max"]])
from IPython.display import Image
Image(filename=str(RESULTS / "mdn" / "figures" / "conditional_densities.png"))""",
        ),
        ("md", "From your code: the asker's loss on a batch with one softmax weight underflowed, and the safe call."),
        (
            "code",
            """import torch
from gradlab.studies.mdn import nll
from gradlab.studies.mdn.losses import mixture_loss

logits = torch.tensor([[0.0, 110.0, 5.0]], requires_grad=True)  # softmax -> (0, 1, 0) exactly, float32
mu, sigma, y = torch.tensor([[0.2, 0.5, 0.8]]), torch.full((1, 3), 0.1), torch.tensor([0.45])
for name in ("probs_log", "probs_torch", "logits"):
    loss = mixture_loss(logits, mu, sigma, y, name)
    (g,) = torch.autograd.grad(loss, logits)
    print(f"{name:12s} loss {float(loss.detach()):.4f}  grad {g.tolist()}")
safe = nll(probs=torch.softmax(logits, -1), mu=mu, sigma=sigma, y=y).mean()
print("nll(probs=)  loss", float(safe.detach()), "grad", torch.autograd.grad(safe, logits)[0].tolist())""",
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
        (
            "md",
            "## From your code\n\nThe asker's network and training loop, with `grad = torch.autograd.grad(pred.sum(), X_train)` "
            "replaced by one call that returns every per-sample gradient and the forward output. Then the same loop with "
            "BatchNorm in training mode, where `pred.sum()` goes silently wrong and the call stays exact.",
        ),
        (
            "code",
            """import torch
from torch import nn

import gradlab


def train(model, X_train, y_train, steps=20):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rows = []
    for it in range(steps):
        grad, pred = gradlab.per_sample_input_grad(model, X_train, return_outputs=True)  # one call, [N, 2] and [N, 1]
        sum_trick = torch.autograd.grad(model(X_train).sum(), X_train)[0]  # the asker's line, for comparison
        loss = ((pred - y_train) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append({"step": it, "loss": loss.item(), "sum_trick_off_by": float((sum_trick - grad).abs().max())})
    return pd.DataFrame(rows)


torch.manual_seed(0)
X_train = torch.rand(100, 2, requires_grad=True)
y_train = torch.sin(3 * X_train[:, :1]).detach()
asker = train(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)), X_train, y_train)
with_bn = train(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 1)), X_train, y_train)
pd.DataFrame({"asker's network: sum trick off by": asker["sum_trick_off_by"],
              "with BatchNorm (train mode): sum trick off by": with_bn["sum_trick_off_by"]}).describe().loc[["mean", "max"]]""",
        ),
        ("code", runs_cell("input_grad")),
    ],
    "spearman.ipynb": [
        ("md", "# spearman: optimising for a rank correlation (matrices, and learning to rank on held-out data)"),
        ("code", SETUP),
        ("code", metrics_cell("spearman")),
        (
            "code",
            """runs = pd.read_csv(RESULTS / "spearman" / "ltr_runs.csv")  # one row per task x method x seed
runs.pivot_table(index="label", columns="task", values="heldout_spearman", aggfunc="mean").round(3)""",
        ),
        (
            "code",
            """import numpy as np
from scipy.stats import spearmanr
# the saved held-out predictions and targets reproduce the reported spearmanr, seed by seed
saved = np.load(RESULTS / "spearman" / "heldout" / "nonlinear_soft_rank.npz")
again = [spearmanr(p, t).statistic for p, t in zip(saved["pred"], saved["target"])]
print(np.array_equal(again, saved["heldout_spearman"]), np.round(again, 3))""",
        ),
        (
            "code",
            """m = pd.read_csv(RESULTS / "spearman" / "matrix_runs.csv")  # equal time budget per trial
m.groupby(["derivation", "method"])[["final_spearman", "evaluations", "backward", "seconds"]].median().round(3)""",
        ),
        (
            "code",
            """stall = pd.read_csv(RESULTS / "spearman" / "stall.csv")  # why the +-0.01 hill climb never moves
stall[["seed", "min_gap_v", "min_gap_list2", "step_on_list2", "certified", "linear_moves_improving"]]""",
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
            "md",
            "Per variant (stats.json, every number): final return, its paired difference from `correct` and the "
            "exact sign-flip p with its smallest attainable p, and what the updates did: of the samples with A < 0 "
            "the fraction whose log pi went down, of A > 0 the fraction whose log pi went up (real updates and the "
            "probe's small step), the share of the update carried by likely actions with A < 0, and corr(loss "
            "value, batch return) across updates, raw and on first differences. `flags` are verdicts (+1 / 0 / -1, "
            "0 = inconclusive: gradlab.stats.VERDICT_ENCODING); `seed_counts` count seeds.",
        ),
        (
            "code",
            """m = json.loads((RESULTS / "pg_cartpole" / "stats.json").read_text())
cols = ["final_return_mean", "final_return_diff_vs_correct", "p_exact_vs_correct", "p_exact_min",
        "adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction", "probe_adv_neg_logp_down_fraction",
        "probe_adv_pos_logp_up_fraction", "share_likely_adv_neg", "sum_negative_update_fraction",
        "loss_value_return_corr", "loss_value_return_corr_detrended"]
print("flags (+1 / 0 / -1):", m["flags"])
print("seed counts (of", m["seeds"], "seeds):", m.get("seed_counts"))
pd.DataFrame({v: {k: r.get(k) for k in cols} for v, r in m["variants"].items()}).T""",
        ),
        ("md", "Does the loss value matter? Each loss over optimiser steps on one fixed batch (symlog scale)."),
        (
            "code",
            """fixed = RESULTS / "pg_cartpole" / "plots" / "fixed_batch_loss.csv"
if fixed.exists():
    fb = pd.read_csv(fixed)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (variant, seed), g in fb.groupby(["variant", "seed"]):
        ax.plot(g["step"], g["loss"], lw=1, label=variant if seed == fb["seed"].min() else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="optimiser step on one fixed batch", ylabel="loss value", yscale="symlog")
    ax.legend()
    print(m.get("fixed_batch", {}).get("loss_after_k_steps_per_seed"))""",
        ),
        (
            "md",
            "From your code: the asker's loss (ported from TensorFlow) on a plain `nn.Sequential` and a random batch.",
        ),
        (
            "code",
            """import numpy as np, torch, torch.nn.functional as F
from torch import nn
from gradlab.studies.pg import discounted_returns, fixed_batch_descent, probe_update, standardize

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 3))  # NOOP / UP / DOWN logits
T = 120
obs, actions = torch.randint(-1, 2, (T, 1600)).float(), torch.randint(0, 3, (T,))
rwd = np.zeros(T); rwd[[39, 79, 119]] = [1.0, -1.0, -1.0]
prwd = torch.tensor(standardize(discounted_returns(rwd, 0.99, reset_at_reward=True)), dtype=torch.float32)
batch = {"obs": obs, "actions": actions, "adv": prwd}
asker_loss = lambda logp: (prwd * -logp).sum()  # reduce_sum(processed_rewards * cross_entropies)
print("one small step:", probe_update(model, asker_loss, batch))
losses, _ = fixed_batch_descent(model, asker_loss, batch, 20, optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-3))
print("loss over 20 RMSProp steps on this batch:", [round(x, 1) for x in losses[::4]])""",
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


def from_your_code(study: str) -> list[tuple[str, str]]:
    """The code blocks of the "From your code" section of docs/studies/<study>.md, as notebook cells
    (one source for the page and the notebook; tests/test_docs_blocks.py runs the page's blocks)."""
    text = (HERE.parent / "docs" / "studies" / f"{study}.md").read_text()
    section = text.split("## From your code", 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0].rstrip() for part in section.split("```python\n")[1:]]
    note = f"## From your code\n\nThe tool on the asker's own code (from `docs/studies/{study}.md`, which says more)."
    return [("md", note)] + [("code", block) for block in blocks]


# notebooks whose own cells do not yet apply the study's tool to the asker's code
FROM_THE_DOCS = {"gd.ipynb": "gd", "spearman.ipynb": "spearman"}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        write(name, cells + (from_your_code(FROM_THE_DOCS[name]) if name in FROM_THE_DOCS else []))


if __name__ == "__main__":
    main()
