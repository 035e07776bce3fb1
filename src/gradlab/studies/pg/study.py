"""REINFORCE: how does a negative reward make the agent avoid an action, and what if the loss changes?

The plan, top to bottom (the same for ``pg_cartpole``, ``pg_pong`` and the ``pg_pong_win`` preset):

1. Train every variant (``correct``, ``flipped``, ``abs``, ``pow``, ``no_standardize``,
   ``baseline``: see losses.py) for every seed with the same network, data pipeline and
   optimiser, trials in parallel worker processes (trial.py). Seed k gives the same initial
   policy and the same first batch of episodes to every variant. Each trial's MLflow child run
   exists from its first second and streams its per-game curves.
2. Mechanism probe on that first batch: one small gradient step of the variant's loss, then
   corr(change of log pi(a_t|s_t), A_t). Also the same correlation for every real update.
3. Across seeds (analysis.py): first and final return per seed, exact sign-flip tests of the
   paired per-seed differences against ``correct``, block-bootstrap intervals over updates for
   what the updates did, the reference policies' returns (a trial of their own: references.py), and the
   verdicts (``flags``, +1 / 0 / -1)
   every verdict of the summary is read from.
4. Tables, DVC plots, figures (figures.py), summary.md (summary.py); throughput in timing.json.
"""

from __future__ import annotations

from gradlab.context import StageContext
from gradlab.numerics import TORCH_THREADS
from gradlab.studies.pg import analysis, figures, references
from gradlab.studies.pg.config import CartPoleParams, PGParams, PongFactorialParams, PongParams, PongWinParams
from gradlab.studies.pg.references import ReferenceSpec, log_reference, run_reference
from gradlab.studies.pg.summary import summary, win_summary
from gradlab.studies.pg.trial import TrialSpec, run_trial
from gradlab.trials import Child


def run_cartpole(p: CartPoleParams, ctx: StageContext) -> dict:
    return run_study(p, ctx, "cartpole")


def run_pong(p: PongParams, ctx: StageContext) -> dict:
    return run_study(p, ctx, "pong")


def run_pong_win(p: PongWinParams, ctx: StageContext) -> dict:
    return run_study(p, ctx, "pong", win=True)  # the pg_pong_win, _fast, _tuned, _noop and _recipe presets


def run_study(p: PGParams, ctx: StageContext, kind: str, win: bool = False) -> dict:
    workers = ctx.workers(p.workers)
    results = train(p, ctx, kind, workers)
    per_trial = [r["summary"] for r in results]

    metrics = analysis.aggregate(per_trial, p, kind, [r["updates"] for r in results], results)
    (ref,) = ctx.run_trials(run_reference, [ReferenceSpec(kind, p, p.seed)], references.child_of, log_reference)
    if kind == "cartpole":
        metrics["reference"] = analysis.cartpole_references(ref)
    else:
        metrics["reference"] = analysis.pong_reference(ref["random"], p)
    curves = analysis.learning_curves(results, p, kind)
    timing = analysis.timing_of(results, workers)

    ctx.write_csv("episodes.csv", analysis.episode_rows(results))
    ctx.write_csv("trials.csv", analysis.trial_rows(per_trial))
    ctx.write_csv("plots/learning_curve.csv", curves)
    ctx.write_csv("plots/final_return.csv", analysis.final_table(metrics["variants"]))
    ctx.write_csv("plots/probe.csv", analysis.probe_rows(results))
    if "gradient" in metrics:
        ctx.write_csv("gradient.csv", analysis.gradient_rows(results))
        metrics["gradient"]["entropy_per_update"] = analysis.entropy_curves(
            [r["updates"] for r in results], p.variants, per_trial
        )
    if p.fixed_batch_steps:
        ctx.write_csv("plots/fixed_batch_loss.csv", analysis.fixed_batch_rows(results))
    ctx.write_json("timing.json", timing)
    ctx.write_csv("timing.csv", [{"variant": t["variant"], "seed": t["seed"], **t["timing"]} for t in per_trial])
    figures.learning(ctx, curves, results, p, kind, metrics)
    figures.final_and_probe(ctx, per_trial, metrics, p, kind)
    figures.logp_moves(ctx, metrics, p, kind)
    figures.loss_value(ctx, results, metrics, p, kind)
    if "gradient" in metrics:
        figures.gradient_cosine(ctx, metrics, p)
    if win:
        metrics["win"] = analysis.win_metrics(per_trial, p)
        if getattr(p, "evaluate_games", 0):
            ctx.write_csv("evaluation_games.csv", analysis.evaluation_rows(results))
            for r in results:  # the first policy that beat the built-in AI: load with Policy.load_state_dict
                if r["winner"]:
                    save_policy(r["winner"], ctx.path(f"policies/{r['variant']}__seed{r['seed']}.pt"))
        figures.win_curves(ctx, results, p, metrics)
        ctx.write_text("summary.md", win_summary(metrics["win"], metrics, timing, p, ctx.stage))
    else:
        ctx.write_text("summary.md", summary(metrics, timing, p, kind))
    return metrics


def train(p: PGParams, ctx: StageContext, kind: str, workers: int) -> list[dict]:
    """Every (variant, seed) trial, each with its child run from its first second (``--resume``: the same run)."""
    seeds = [p.seed + k for k in range(p.seeds)]
    slots = min(workers, p.seeds * len(p.variants))
    specs = [
        TrialSpec(
            kind,
            p,
            v,
            s,
            checkpoint=str(ctx.checkpoints / f"{v}__seed{s}.pt") if p.checkpoint_every else None,
            resume=ctx.resume,
            progress_slot=(1 + i % slots) if ctx.progress else None,
            update_threads=TORCH_THREADS,  # fixed, not the machine's cores: the update's sums split by thread
        )
        for i, (s, v) in enumerate((s, v) for s in seeds for v in p.variants)
    ]
    return ctx.run_trials(run_trial, specs, child_of, workers=workers)


def child_of(spec: TrialSpec) -> Child:
    """The trial's child run; on ``--resume`` the one its checkpoint names."""
    resume_id = None
    if spec.resume:
        from gradlab.studies.pg.loop import checkpoint_run_id

        resume_id = checkpoint_run_id(spec.checkpoint, spec.kind, spec.variant, spec.seed)
    return Child(spec.variant, spec.seed, resume_id=resume_id)


def save_policy(state: dict, path) -> None:
    import torch

    torch.save(state, path)


def run_pong_factorial(p: PongFactorialParams, ctx: StageContext) -> dict:
    """The asker's recipe taken apart: reads the arms' committed preset results (factorial.py); trains nothing."""
    from gradlab.settings import current
    from gradlab.studies.pg import factorial

    metrics, table = factorial.analyse(p, current().results)
    ctx.write_csv("seeds.csv", table)
    factorial.figure(ctx, table, p)
    ctx.write_text("summary.md", factorial.summary(metrics, table, p))
    return metrics
