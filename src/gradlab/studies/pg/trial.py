"""One (variant, seed) of a pg stage: the unit a worker process or a sweep runs.

``run_trial(spec)`` trains the trial and returns plain data. Run by the trial engine (:mod:`gradlab.trials`),
the trial has its child run (``<variant>__seed<k>``) from its first second: its per-game curves
(``episode/return``, ``episode/return_mean100``, ``episode/length``) are sent to it while it trains, in
batches at most every ``Run.LIVE_EVERY`` seconds with each game's real end time, so ``gradlab ui`` shows
the learning curve growing; its summary metrics and policies when it ends. On a terminal a progress bar
shows games, the running mean return and frames/s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradlab.studies.pg.config import PGParams
from gradlab.trials import current_run
from gradlab.tune.report import report as tune_report

EARLY_UPDATES = 20  # the fractions are also reported over a trial's first updates (while it is still learning)
RUNNING_WINDOW = 100  # games in the running mean (Pong's "solved" criterion uses the last 100 games)


@dataclass(frozen=True)
class TrialSpec:
    kind: str  # "cartpole" or "pong"
    params: PGParams
    variant: str
    seed: int
    checkpoint: str | None = None
    resume: bool = False
    progress_slot: int | None = None  # line of this trial's progress bar; None: no bar
    update_threads: int = 1  # torch threads for the update (the emulator is idle then); the rollout uses 1


def running_mean(returns, window: int = RUNNING_WINDOW) -> np.ndarray:
    """Mean of the last ``window`` games after each game (of all games so far while fewer were played)."""
    r = np.asarray(returns, float)
    c = np.concatenate([[0.0], np.cumsum(r)])
    i = np.arange(1, r.size + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def episodes_to_solve(returns: list[float], threshold: float, window: int) -> int | None:
    """Episodes played until the mean of the last ``window`` returns first reaches ``threshold``."""
    r = np.asarray(returns, float)
    if r.size < window:
        return None
    ma = np.convolve(r, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(ma >= threshold)
    return int(hit[0] + window) if hit.size else None


def finite_mean(xs) -> float:
    """Mean of the finite values; NaN (no warning) when there is none."""
    x = np.asarray([v for v in xs if v is not None], float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def finite_corr(xs, ys) -> float:
    """Pearson correlation over the pairs where both are finite; NaN when fewer than 3 pairs or one side is constant."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else math.nan


def update_summary(u: dict) -> dict:
    """What the updates of one trial did: the fractions of samples whose log pi moved the right way (mean over
    updates), the same on the updates where sum A*CE was negative / positive (where ``abs`` flips the whole
    step), the share of the update carried by likely actions with A < 0, and corr(loss value, batch return)."""
    sign = np.sign(np.asarray(u["sum_adv_ce"], float))
    out = {
        "loss_value_return_corr": finite_corr(u["loss"], u["batch_return"]),
        "adv_neg_logp_down_fraction": finite_mean(u["adv_neg_logp_down_fraction"]),
        "adv_pos_logp_up_fraction": finite_mean(u["adv_pos_logp_up_fraction"]),
        "adv_weighted_right_fraction": finite_mean(u["adv_weighted_right_fraction"]),
        "share_likely_adv_neg": finite_mean(u["share_likely_adv_neg"]),
        "likely_adv_neg_samples": finite_mean(u["likely_adv_neg_samples"]),
        "sum_negative_update_fraction": float((sign < 0).mean()) if sign.size else math.nan,
    }
    for key in ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction", "adv_weighted_right_fraction"):
        out[f"{key}_early"] = finite_mean(u[key][:EARLY_UPDATES])
    for name, keep in (("sum_negative", sign < 0), ("sum_positive", sign > 0)):
        for key in ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction"):
            out[f"{key}_{name}"] = finite_mean(np.asarray(u[key], float)[keep])
    return out


def fixed_batch_summary(f: dict) -> dict:
    """The fixed-batch experiment of one trial: loss before and after K steps, whether it is still falling."""
    if not f:
        return {}
    loss = np.asarray(f["loss"], float)
    k = loss.size - 1
    tail = max(1, k // 10)
    below = np.flatnonzero(loss < 0)
    return {
        "steps": k,
        "loss_before": float(loss[0]),
        "loss_after_k_steps": float(loss[-1]),
        "first_step_below_zero": int(below[0]) if below.size else None,
        "falling_at_end": bool(np.isfinite(loss[-1]) and loss[-1] < loss[-1 - tail]),
        "decreasing_step_fraction": float(np.mean(np.diff(loss) < 0)) if k else math.nan,
        "eval_return_before": f["eval_return_before"],
        "eval_return_after": f["eval_return_after"],
    }


def trial_summary(r: dict, p, kind: str) -> dict:
    """The numbers of one trial that the analysis and its child run need."""
    e = r["episodes"]
    returns = e["return"]
    probes = [v for v in r["updates"]["probe"] if math.isfinite(v)]
    frames = int(sum(e["frames"]))
    out = {
        "variant": r["variant"],
        "seed": r["seed"],
        "episodes": len(returns),
        "first_return": float(np.mean(returns[: p.final_episodes])),
        "final_return": float(np.mean(returns[-p.final_episodes :])),
        "final_length": float(np.mean(e["length"][-p.final_episodes :])),
        "probe_corr": r["fixed_probe"],
        "probe_adv_neg_logp_down_fraction": r["fixed_probe_moves"].get("adv_neg_logp_down_fraction", math.nan),
        "probe_adv_pos_logp_up_fraction": r["fixed_probe_moves"].get("adv_pos_logp_up_fraction", math.nan),
        "probe_adv_weighted_right_fraction": r["fixed_probe_moves"].get("adv_weighted_right_fraction", math.nan),
        **update_summary(r["updates"]),
        "fixed_batch": fixed_batch_summary(r["fixed_batch"]),
        "probe_corr_first_update": r["updates"]["probe"][0] if r["updates"]["probe"] else math.nan,
        "probe_corr_train_mean": float(np.mean(probes)) if probes else math.nan,
        "diverged_at_update": r["diverged_at"] if r["diverged_at"] >= 0 else None,
        "frames": frames,
        "timing": {
            "train_seconds": r["seconds"],
            "cpu_seconds": r["cpu_seconds"],
            "frames_per_second": frames / r["seconds"] if r["seconds"] > 0 else math.nan,
        },
    }
    if kind == "cartpole":
        out["episodes_to_solve"] = episodes_to_solve(returns, p.solve_threshold, p.solve_window)
    evaluated = bool(getattr(p, "evaluate_games", 0))
    if getattr(p, "stop_at_mean", None) is not None or evaluated:
        g = r["stopped_at_game"]
        out["won"] = g >= 0
        out["games_to_win"] = g if g >= 0 else None
        out["frames_to_win"] = int(sum(e["frames"][:g])) if g >= 0 else None
        out["seconds_to_win"] = float(e["seconds"][g - 1]) if g >= 0 else None
        full = running_mean(returns, p.stop_window)[p.stop_window - 1 :] if returns else np.empty(0)
        reached = np.flatnonzero(full >= p.progress_mean)
        k = int(reached[0]) + p.stop_window if reached.size else None
        out["games_to_progress"] = k  # games until the running mean of stop_window games reached progress_mean
        out["frames_to_progress"] = int(sum(e["frames"][:k])) if k else None
    if evaluated:
        evals = [{k: v for k, v in ev.items() if k not in ("scores", "env_seeds")} for ev in r["evaluations"]]
        won = [ev for ev in evals if ev["won"] and not ev["greedy"]]
        if won:  # the winning checkpoint: training seconds until it (evaluations excluded), its score
            out["seconds_to_win"] = won[0]["train_seconds"]
            out["frames_to_win"] = won[0]["frames_trained"]
            out["eval_mean"], out["eval_ci_low"], out["eval_ci_high"] = (
                won[0][k] for k in ("mean", "ci_low", "ci_high")
            )
        greedy = [ev for ev in evals if ev["greedy"]]
        if greedy:
            out["eval_greedy_mean"] = greedy[0]["mean"]
            out["eval_greedy_ci_low"], out["eval_greedy_ci_high"] = greedy[0]["ci_low"], greedy[0]["ci_high"]
        out["evaluations"] = evals
        out["eval_seconds"] = float(sum(ev["seconds"] for ev in evals))
    return out


class _Games:
    """The trial's new games after every update: to its progress bar and, streamed, to its child run."""

    def __init__(self, spec: TrialSpec, total_games: int):
        self.spec, self.run, self.bar = spec, None, None
        self.sent = 0  # games already streamed
        self.keep: set[int] | None = None  # the games whose points are sent (None: all; Pong's games are few)
        self.last_flush = time.monotonic()
        self.total_games = total_games

    def open(self, training) -> None:
        s, module = self.spec, training.module
        self.run = current_run()
        if self.run is not None:
            # --resume continues the checkpoint's run when the store has it; else its games are sent again
            self.sent = len(module.episodes["return"]) if training.run_id == self.run.id else 0
            training.run_id = self.run.id
            if s.kind == "cartpole":  # hundreds of short episodes: thinned like every curve (tracking.py)
                from gradlab.tracking import thinned

                self.keep = set(thinned(self.total_games, self.run.tracker.curve_points))
        if s.progress_slot is not None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total_games,
                desc=f"{s.variant} seed {s.seed}",
                unit="game",
                position=s.progress_slot,
                leave=False,
                initial=len(module.episodes["return"]),
            )

    def __call__(self, module, first_new: int) -> None:
        e = module.episodes
        n = len(e["return"])
        if self.bar is not None:
            mean = running_mean(e["return"][-RUNNING_WINDOW:])[-1] if n else math.nan
            fps = sum(e["frames"]) / module.seconds if module.seconds > 0 else 0.0
            self.bar.set_postfix_str(f"mean{RUNNING_WINDOW} {mean:+.1f}, {fps / 1000:.1f}k frames/s", refresh=False)
            self.bar.update(n - first_new)
        if self.run is not None and time.monotonic() - self.last_flush >= self.run.LIVE_EVERY:
            self.send(module)
        tune_report(n, running_mean(e["return"][-RUNNING_WINDOW:])[-1] if n else math.nan)  # gradlab tune: may prune

    def send(self, module) -> None:
        """Stream the games not yet sent, stamped with the real time each one ended."""
        e = module.episodes
        n = len(e["return"])
        if self.run is None or n == self.sent:
            return
        means = running_mean(e["return"][:n])
        start = time.time() - module.seconds  # wall-clock time at the trial's first second of training
        points = []
        for i in range(self.sent, n):
            if self.keep is not None and i not in self.keep and i != n - 1:
                continue
            ts = int((start + e["seconds"][i]) * 1000)
            points += [
                ("episode/return", e["return"][i], ts, i),
                ("episode/return_mean100", means[i], ts, i),
                ("episode/length", e["length"][i], ts, i),
            ]
        self.run.log_points(points)
        self.run.flush()
        self.sent = n
        self.last_flush = time.monotonic()

    def close(self, training, summary: dict | None) -> None:
        """The last games, and with the trial's summary its curves and policies (the engine ends the run)."""
        if self.bar is not None:
            self.bar.close()
        if self.run is None:
            return
        self.send(training.module)
        if summary is not None:
            log_trial_curves(self.run, training.module, summary)
            log_policy(self.run, training, self.spec)
        self.run.flush()


def log_trial_curves(run, module, s: dict) -> None:
    """Per-update curves and the trial's summary metrics (sent when the trial ends)."""
    u = module.updates
    clean = [v if math.isfinite(v) else 0.0 for v in u["grad_norm"]]
    finite_loss = [(i, v) for i, v in enumerate(u["loss"]) if math.isfinite(v)]
    if finite_loss:
        run.log_curve("train/loss", [v for _, v in finite_loss], [i for i, _ in finite_loss])
    run.log_curve("train/grad_norm", clean)
    run.log_curve("probe/dlogp_adv_corr_update", [v if math.isfinite(v) else 0.0 for v in u["probe"]])
    final = {
        "eval/final_return": s["final_return"],
        "eval/final_length": s["final_length"],
        "probe/dlogp_adv_corr": s["probe_corr"],
        "train/diverged": float(s["diverged_at_update"] is not None),
        "train/frames": float(s["frames"]),
    }
    for key in ("episodes_to_solve", "games_to_win", "frames_to_win", "seconds_to_win", "games_to_progress"):
        if s.get(key) is not None:
            final[f"eval/{key}"] = s[key]
    sampled = [ev for ev in s.get("evaluations", []) if not ev["greedy"]]
    if sampled:  # each checkpoint's evaluation (sampled actions), at the update it was taken
        run.log_curve("eval/checkpoint_mean", [ev["mean"] for ev in sampled], [ev["update"] for ev in sampled])
        final["eval/seconds"] = s["eval_seconds"]
    run.log_metrics({k: v for k, v in final.items() if v is not None and math.isfinite(v)})


def log_policy(run, training, spec: TrialSpec) -> None:
    """The trial's policies as artifacts of its child run, reloadable with ``policy.load_logged(run_id)``:
    ``model/policy.pt`` (the final state dict), ``model/winner.pt`` (the first policy whose evaluation won, win
    presets) and ``model/model.json`` (the network's shape, the stage's parameters, and the evaluation each
    policy had, which ``policy.reevaluate`` plays again game for game)."""
    import json
    import tempfile

    import torch

    from gradlab.config import to_plain

    module = training.module
    sampled = [ev for ev in training.evaluations if not ev["greedy"]]
    keep = ("update", "games", "mean", "ci_low", "ci_high", "won")
    first, last = module.policy.net[0], module.policy.net[2]
    meta = {
        "class": "gradlab.studies.pg.policy.Policy",
        "obs_dim": first.in_features,
        "hidden": first.out_features,
        "n_actions": last.out_features,
        "kind": spec.kind,
        "variant": spec.variant,
        "seed": spec.seed,
        "updates": module.next_update,
        "params": to_plain(spec.params),
        "evaluations": {},
    }
    final = [ev for ev in sampled if ev["update"] == module.next_update]
    if final:
        meta["evaluations"]["policy"] = {k: final[-1][k] for k in keep}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(module.policy.state_dict(), folder / "policy.pt")
        if training.winner:
            torch.save(training.winner, folder / "winner.pt")
            won = [ev for ev in sampled if ev["won"]]
            if won:
                meta["evaluations"]["winner"] = {k: won[0][k] for k in keep}
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=float))
        run.log_artifacts(folder, "model")


def run_trial(spec: TrialSpec) -> dict:
    """Train one (variant, seed); runs in a worker process; returns plain data only."""
    import torch

    from gradlab.studies.pg.loop import Training

    # small per-step forwards are 10x slower with 2 intra-op threads than with 1 (thread wake-ups);
    # the cores are used by parallel trials and the emulator's threads instead
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    p = spec.params
    games = _Games(spec, p.updates * p.episodes_per_update)
    training = Training(
        p, spec.kind, spec.variant, spec.seed, Path(spec.checkpoint) if spec.checkpoint else None, on_episodes=games
    )
    module = training.module
    module.update_threads = spec.update_threads
    resumed_at = module.next_update if (spec.resume and training.load_checkpoint()) else None
    games.open(training)
    summary = None
    try:
        training.fit()
        result = {
            "variant": spec.variant,
            "seed": spec.seed,
            "episodes": module.episodes,
            "updates": module.updates,
            "diverged_at": module.diverged_at,
            "stopped_at_game": training.stopped_at_game,
            "evaluations": training.evaluations,
            "winner": training.winner,
            "fixed_probe": module.fixed_probe,
            "fixed_probe_moves": module.fixed_probe_moves,
            "fixed_batch": module.fixed_batch,
            "resumed_at": resumed_at,
            "seconds": module.seconds,
        }
        if spec.kind == "cartpole":
            result["gradient"] = measure_gradients(module, p, spec)
        result["cpu_seconds"] = training.cpu_seconds()
        summary = trial_summary(result, p, spec.kind)
        result["summary"] = summary
        return result
    finally:
        try:
            games.close(training, summary)
        finally:
            training.close()
            torch.set_num_threads(threads)


def measure_gradients(module, p, spec: TrialSpec) -> list[dict]:
    """gradient.py at each policy the trial kept (``gradient_at``): the cosine of every variant's expected update
    direction with grad J. The baseline's direction only where the trial has its value network."""
    from gradlab.studies.pg.gradient import measure
    from gradlab.studies.pg.policy import Policy, Value

    out = []
    for key in sorted(module.snapshots, key=int):
        snap = module.snapshots[key]
        policy = Policy(module.collector.obs_dim, p.hidden, module.collector.n_actions)
        policy.load_state_dict(snap["policy"])
        value = None
        if "value" in snap:
            value = Value(module.collector.obs_dim, p.hidden)
            value.load_state_dict(snap["value"])
        out.append(measure(policy, value, p, spec.seed, int(key), p.variants))
    return out
