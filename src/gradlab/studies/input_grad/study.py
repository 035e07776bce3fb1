"""How do I get d h(x_i) / d x_i for every sample of a batch, inside a training loop?

The plan, top to bottom:

1. Agreement: on the question's network (no interaction between samples), float64,
   the five methods (sum, grad_outputs, vmap, jacrev, loop) give the same [N, d]
   gradients, and central finite differences agree with them.
2. BatchNorm in training mode couples the samples: the sum trick then returns the
   column sums sum_j dh(x_j)/dx_i of the batch Jacobian (checked against the Jacobian),
   not its diagonal blocks dh(x_i)/dx_i (what loop/jacrev/vmap return). Quantify the
   gap; in eval mode (running statistics) it vanishes.
3. Cost: time and peak allocator memory of each method against N = 10 .. 10^5
   (float32); loop and jacrev are O(N^2) and capped, the caps recorded.
4. Use in training: a LightningModule fits h to f(x) = sin(pi x1) cos(pi x2) from
   values only vs values + input gradients (Sobolev training, create_graph=True),
   several seeds: held-out value RMSE and gradient RMSE, 95 % CIs, a paired t-test.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from gradlab.context import StageContext
from gradlab.models import log_model
from gradlab.studies.input_grad import analysis, figures
from gradlab.studies.input_grad.config import InputGradParams
from gradlab.studies.input_grad.methods import METHODS, central_differences, per_sample_input_grad
from gradlab.studies.input_grad.problems import make_network, make_points
from gradlab.studies.input_grad.summary import summary
from gradlab.studies.input_grad.timing import timing_grid
from gradlab.studies.input_grad.trial import VARIANTS, TrialSpec, dataset, run_trial
from gradlab.tracking import Run
from gradlab.trials import Child


def child_of(t: TrialSpec) -> Child:
    return Child(t.variant, t.seed, {"grad_weight": t.grad_weight})


def log_trial(run: Run, t: TrialSpec, r: dict) -> None:
    """A Sobolev trial's curves and its trained network (``trial.load_logged``, ``trial.reevaluate``) on its child
    run, in the process that ran it."""
    run.log_curve("train/loss", r["losses"])
    run.log_curve("eval/value_rmse", r["eval_value_rmse"], r["eval_steps"])
    run.log_curve("eval/grad_rmse", r["eval_grad_rmse"], r["eval_steps"])
    network = "gradlab.studies.input_grad.problems.make_smooth_mlp"
    evaluation = {"value_rmse": r["value_rmse"], "grad_rmse": r["grad_rmse"]}
    state = r.pop("state")  # the network goes to MLflow, not back to the stage's process
    log_model(run, state, {"network": network, "spec": asdict(t), "evaluation": evaluation})
    run.log_dataset(*dataset(t))


def run(p: InputGradParams, ctx: StageContext) -> dict:
    g = torch.Generator().manual_seed(p.seed)
    X = make_points(p.check.n, g)

    # 1. agreement on the question's network, and finite differences
    net = make_network(p.model.hidden, p.model.activation, batchnorm=False, seed=p.seed)
    grads = {m: per_sample_input_grad(net, X, m) for m in METHODS}
    agreement = analysis.compare_to(grads, "loop", p.check.rel_tol)
    fd = central_differences(net, X, p.check.fd_eps)
    fd_diff = float((fd - grads["loop"]).abs().max())
    fd_metrics = {"max_abs_diff": fd_diff, "eps": p.check.fd_eps, "passed": fd_diff <= p.check.fd_tol}
    with ctx.child("agreement", p.seed) as run:
        run.log_metrics({f"check/{m}_max_abs_diff": v["max_abs_diff"] for m, v in agreement.items()})
        run.log_metrics({"check/fd_max_abs_diff": fd_diff})

    # 2. BatchNorm: training mode (batch statistics) vs eval mode (running statistics)
    bn_net = make_network(p.model.hidden, p.model.activation, batchnorm=True, seed=p.seed).train()
    batchnorm, bn_grads = analysis.batchnorm_case(bn_net, X, p.check.rel_tol)
    with ctx.child("batchnorm", p.seed) as run:
        run.log_metrics({f"batchnorm/{k}": v for k, v in batchnorm.items() if isinstance(v, float)})

    # 2b. inputs of any shape: image batches [N, 1, 8, 8] on a small CNN, with and without BatchNorm2d
    image = analysis.image_case(p.check.n, p.seed, p.check.rel_tol)
    with ctx.child("image", p.seed) as run:
        run.log_metrics(
            {f"image/{k}_auto_max_abs_diff": image[k]["auto_max_abs_diff"] for k in ["cnn", "cnn_batchnorm"]}
        )

    # 3. time and peak memory against N
    timing_net = make_network(p.model.hidden, p.model.activation, batchnorm=False, seed=p.seed).float()
    gt = torch.Generator().manual_seed(p.seed + 1)
    caps = {"loop": p.timing.loop_max_n, "jacrev": p.timing.jacrev_max_n}
    rows = timing_grid(
        timing_net,
        lambda n: make_points(n, gt, torch.float32),
        p.timing.methods,
        list(p.timing.ns),
        caps,
        p.timing.min_seconds,
        p.timing.max_repeats,
        memory=p.timing.memory,
        progress=lambda it: ctx.track(it, "timing"),
    )
    with ctx.child("timing", p.seed, tags={"gradlab.nondeterministic": "wall-clock"}) as run:
        for method in ["reference_backward", *p.timing.methods]:
            ok = [r for r in rows if r["method"] == method and r["status"] == "ok"]
            run.log_curve(f"timing/{method}_seconds", [r["seconds"] for r in ok], [r["n"] for r in ok])
            if p.timing.memory:
                run.log_curve(f"timing/{method}_peak_bytes", [r["peak_bytes"] for r in ok], [r["n"] for r in ok])

    # 4. Sobolev training, several seeds, trials in parallel
    s = p.sobolev
    trials = [
        TrialSpec(
            variant,
            p.seed + k,
            s.grad_weight if weight is None else weight,
            s.n_train,
            s.n_test,
            s.hidden,
            s.steps,
            s.lr,
            s.method,
            s.eval_every,
        )
        for k in range(s.seeds)
        for variant, weight in VARIANTS.items()
    ]
    results = ctx.run_trials(run_trial, trials, child_of, log_trial, workers=s.workers or None, desc="sobolev")
    sobolev = analysis.summarise_sobolev(trials, results)

    # outputs
    ctx.write_csv("agreement.csv", [{"method": m, **v} for m, v in agreement.items()])
    ctx.write_csv(
        "batchnorm.csv",
        [
            {"mode": mode, "method": m, "max_abs_diff_vs_loop": d}
            for (mode, m), d in analysis.batchnorm_table(bn_grads).items()
        ],
    )
    ctx.write_csv("timings.csv", rows)
    ctx.write_csv("plots/time_vs_n.csv", analysis.long_table(rows, "seconds"))
    ctx.write_csv("plots/peak_bytes_vs_n.csv", analysis.long_table(rows, "peak_bytes"))
    ctx.write_csv(
        "sobolev_trials.csv",
        [
            {"variant": t.variant, "seed": t.seed, "value_rmse": r["value_rmse"], "grad_rmse": r["grad_rmse"]}
            for t, r in zip(trials, results, strict=True)
        ],
    )
    ctx.write_csv("plots/sobolev_grad_rmse.csv", analysis.sobolev_curves(trials, results))
    scale = float(grads["loop"].abs().max())
    ctx.savefig(figures.figure_agreement(agreement, fd_diff, p, scale), "agreement.png")
    ctx.savefig(figures.figure_batchnorm(bn_grads, batchnorm), "batchnorm.png")
    methods = ["reference_backward", *p.timing.methods]
    ctx.savefig(figures.figure_timing(rows, methods, p.timing.memory), "timing.png")
    ctx.savefig(figures.figure_sobolev(trials, results, sobolev), "sobolev.png")

    metrics = analysis.metrics(agreement, fd_metrics, batchnorm, image, caps, sobolev, p)
    ctx.write_text("summary.md", summary(metrics, rows, p))
    return metrics
