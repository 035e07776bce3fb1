"""Parameters of the ``pg_cartpole`` and ``pg_pong`` stages (one model shape, two sets of defaults).

The defaults of :class:`CartPoleParams` and :class:`PongParams` are ``params.yaml``'s ``pg_cartpole`` and
``pg_pong`` sections, value for value (tests/test_pg_structure.py checks it): a partial parameter file (the
tiny ones, ``--quick``) gets what ``dvc repro`` runs. The presets' models (:class:`PongWinParams`, ...) carry
their presets' defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params, default_list
from gradlab.stages import Stage

Variant = Literal["correct", "flipped", "abs", "pow", "no_standardize", "baseline"]
ALL_VARIANTS: list[Variant] = ["correct", "flipped", "abs", "pow", "no_standardize", "baseline"]
MEMORY_BUDGET_BYTES = 8 * 2**30


class Optimizer(Params):
    """The optimiser of every variant (the question: RMSProp, lr 1e-3, decay 0.99)."""

    name: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    decay: float = Field(0.99, ge=0.0, lt=1.0)  # RMSProp's alpha; Adam's beta2
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class PGParams(Params):
    """What both environments share: variants, seeds, returns, network, optimiser, budget."""

    seed: int = Field(0, ge=0, le=2**31 - 1)
    seeds: int = Field(5, ge=1, le=100)
    variants: list[Variant] = Field(default_factory=lambda: list(ALL_VARIANTS), min_length=1)
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    standardize_per: Literal["batch", "episode"] = "batch"
    hidden: int = Field(32, ge=1, le=4096)
    episodes_per_update: int = Field(10, ge=1, le=256)  # = parallel environments; one episode each per update
    updates: int = Field(60, ge=1, le=1_000_000)
    final_episodes: int = Field(50, ge=1, le=100_000)  # "final return" = mean return of the last K episodes
    value_coef: float = Field(0.5, ge=0.0, le=100.0)  # weight of the value loss (variant `baseline` only)
    probe_step: float = Field(1e-3, gt=0.0, le=10.0)  # parameter-space length of the probe's gradient step
    # optimiser steps of each variant's loss on its first batch (a copy of the policy): does the loss value
    # matter? 0 = skip
    fixed_batch_steps: int = Field(100, ge=0, le=100_000)
    optimizer: Optimizer = Optimizer()
    checkpoint_every: int = Field(0, ge=0, le=1_000_000)  # updates between checkpoints; 0 = never
    workers: int = Field(0, ge=0, le=256)  # trial processes; 0 = one per core

    @model_validator(mode="after")
    def _distinct_variants(self):
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must be distinct (got {self.variants})")
        if self.final_episodes > self.updates * self.episodes_per_update:
            raise ValueError(
                f"final_episodes ({self.final_episodes}) is more than the episodes of a trial "
                f"(updates * episodes_per_update = {self.updates * self.episodes_per_update})"
            )
        return self


class CartPoleParams(PGParams):
    """CartPole-v1 (episodes end at 500 steps)."""

    seeds: int = Field(10, ge=1, le=100)  # >= 10: an interval over seeds for the cosines with grad J
    episodes_per_update: int = Field(5, ge=1, le=256)
    updates: int = Field(100, ge=1, le=1_000_000)
    optimizer: Optimizer = Optimizer(lr=0.01)
    solve_threshold: float = Field(475.0, gt=0.0, le=500.0)
    solve_window: int = Field(100, ge=1, le=100_000)
    # episodes played by the policy before and after the fixed-batch steps (same starts); 0 = skip
    fixed_batch_eval_episodes: int = Field(20, ge=0, le=10_000)
    # Does each loss move the policy up the true gradient (gradient.py)? At the policies after these updates
    # (0 = the initial one), in every trial: grad J from gradient_episodes episodes, each variant's expected update
    # direction from gradient_batches batches of episodes_per_update episodes. Empty list or 0 episodes: skip.
    gradient_at: list[int] = Field(default_factory=lambda: [10, 30, 50], max_length=20)
    gradient_episodes: int = Field(1000, ge=0, le=100_000)
    gradient_batches: int = Field(80, ge=2, le=100_000)

    @model_validator(mode="after")
    def _gradient_checkpoints(self):
        bad = [u for u in self.gradient_at if not 0 <= u <= self.updates]
        if bad or len(set(self.gradient_at)) != len(self.gradient_at):
            raise ValueError(
                f"gradient_at must be distinct update counts in [0, updates = {self.updates}] (got {self.gradient_at})"
            )
        if self.gradient_at and self.gradient_episodes == 1:
            raise ValueError("gradient_episodes must be 0 (skip) or at least 2 (its standard error needs two)")
        return self


class PongParams(PGParams):
    """ALE/Pong-v5 through ale_py.AtariVectorEnv, the classic pg-pong preprocessing."""

    seeds: int = Field(3, ge=1, le=100)
    variants: list[Variant] = Field(default_factory=default_list("correct", "flipped"), min_length=1)
    standardize_per: Literal["batch", "episode"] = "episode"
    hidden: int = Field(200, ge=1, le=4096)
    episodes_per_update: int = Field(8, ge=1, le=256)
    updates: int = Field(28, ge=1, le=1_000_000)
    optimizer: Optimizer = Optimizer(lr=0.003)  # 3x the question's lr, to learn within the stage's budget
    frameskip: int = Field(4, ge=1, le=16)
    repeat_action_probability: float = Field(0.25, ge=0.0, le=1.0)  # sticky actions
    downsample: Literal[1, 2] = 2  # 1: the classic 80x80 input; 2: 2x2 max-pooled to 40x40
    points_per_episode: int = Field(21, ge=1, le=21)  # end an episode after this many points (21 = a full game)
    max_episode_frames: int = Field(108_000, ge=100, le=1_000_000)
    env_threads: int = Field(2, ge=0, le=256)  # emulator threads per group of games; 0 = one per core
    rollout: Literal["stream", "episodes"] = "stream"  # stream: games never wait (stream.py); episodes: lockstep
    env_groups: int = Field(2, ge=1, le=64)  # stream: games split into this many pipelined vector environments
    actions: Literal["up_down", "noop_up_down"] = "up_down"  # the question's recipe: noop_up_down
    move_cost: float = Field(0.0, ge=0.0, le=100.0)  # + move_cost * P(UP or DOWN) per step (the question's loss)
    stop_at_mean: float | None = Field(None, ge=-21.0, le=21.0)  # stop once the mean of the last stop_window
    stop_window: int = Field(100, ge=1, le=100_000)  # games is above stop_at_mean (None: never; updates = cap)
    # a forward and backward over a whole batch of Pong games per step: off by default (CartPole: 100)
    fixed_batch_steps: int = Field(0, ge=0, le=100_000)
    workers: int = Field(1, ge=0, le=256)  # one trial at a time: it fills both cores

    @model_validator(mode="after")
    def _move_cost_needs_noop(self):
        if self.move_cost and self.actions != "noop_up_down":
            raise ValueError("move_cost needs actions: noop_up_down (with two actions every step moves the paddle)")
        if self.actions != "up_down" and self.rollout != "stream":
            raise ValueError("actions noop_up_down needs rollout: stream (rollout episodes plays UP/DOWN only)")
        return self

    @model_validator(mode="after")
    def _fits_in_memory(self):
        side = 80 // self.downsample
        steps = self.max_episode_frames // self.frameskip
        need = self.episodes_per_update * steps * side * side * 5  # int8 buffer + float32 batch
        if need > MEMORY_BUDGET_BYTES:
            raise ValueError(
                f"episodes_per_update * max_episode_frames/frameskip * {side}x{side} inputs needs up to "
                f"{need / 2**30:.1f} GiB; allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB "
                "(lower episodes_per_update or max_episode_frames, or use downsample: 2)"
            )
        return self


class PongWinParams(PongParams):
    """The win preset: ``correct`` until the mean of the last 100 games is above 0, with a budget cap."""

    variants: list[Variant] = Field(default_factory=default_list("correct"), min_length=1)
    updates: int = Field(1000, ge=1, le=1_000_000)  # the cap: 8000 games
    optimizer: Optimizer = Optimizer()  # the question's lr 1e-3
    final_episodes: int = Field(100, ge=1, le=100_000)
    stop_at_mean: float | None = Field(0.0, ge=-21.0, le=21.0)
    # An evaluated win (evaluation.py): with evaluate_games > 0, every evaluate_every updates once the running mean
    # of the last stop_window games reached evaluate_from_mean, the frozen policy plays evaluate_games fresh games
    # (evaluate_envs emulators at once, seeds training never uses); the trial stops at the first evaluation whose
    # 95 % t interval of the mean score lies above 0. stop_at_mean must then be null (one stop rule).
    evaluate_games: int = Field(0, ge=0, le=100_000)
    evaluate_envs: int = Field(8, ge=1, le=256)
    evaluate_every: int = Field(10, ge=1, le=1_000_000)
    evaluate_from_mean: float = Field(-3.0, ge=-21.0, le=21.0)
    evaluate_greedy: bool = True  # also evaluate the winning policy's most likely actions (reported, not the rule)
    progress_mean: float = Field(-10.0, ge=-21.0, le=21.0)  # games and frames until the running mean reaches it
    max_games: int | None = Field(None, ge=1, le=10_000_000)  # a cap in games (None: updates x episodes_per_update)

    @model_validator(mode="after")
    def _one_stop_rule(self):
        if not self.evaluate_games:
            return self
        from gradlab.stats import MIN_CI_N

        if self.stop_at_mean is not None:
            raise ValueError("evaluate_games > 0 stops at the first winning evaluation: set stop_at_mean: null")
        if self.evaluate_games < MIN_CI_N or self.evaluate_games % self.evaluate_envs:
            raise ValueError(
                f"evaluate_games must be at least {MIN_CI_N} and a multiple of evaluate_envs ({self.evaluate_envs}): "
                "every emulator plays the same number of games"
            )
        if self.rollout != "stream":
            raise ValueError("evaluate_games needs rollout: stream")
        return self


class PongRecipeParams(PongWinParams):
    """The question's recipe (Google I/O 18 Pong): NOOP/UP/DOWN and a move cost of 0.01 per step."""

    actions: Literal["up_down", "noop_up_down"] = "noop_up_down"
    move_cost: float = Field(0.01, ge=0.0, le=100.0)


class Arm(Params):
    """One arm of the factorial: its actions and move cost, and the preset stage that trained it (or the arm it
    is the same training as)."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    actions: Literal["up_down", "noop_up_down"]
    move_cost: float = Field(ge=0.0, le=100.0)
    stage: str | None = Field(None, pattern=r"^pg_pong_[a-z_]+$")  # its results: results/<stage>/
    same_as: str | None = None  # not trained: the same training as that arm (see factorial.py)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.stage is None) == (self.same_as is None):
            raise ValueError(f"arm {self.name}: give exactly one of stage (it was trained) or same_as")
        if self.same_as is not None and not (self.actions == "up_down" and self.move_cost > 0):
            raise ValueError(
                f"arm {self.name}: same_as is only for UP/DOWN with a move cost (a constant: the same training)"
            )
        return self


def _default_arms() -> list[Arm]:
    return [
        Arm(name="up_down", actions="up_down", move_cost=0.0, stage="pg_pong_win"),
        Arm(name="noop", actions="noop_up_down", move_cost=0.0, stage="pg_pong_noop"),
        Arm(name="recipe", actions="noop_up_down", move_cost=0.01, stage="pg_pong_recipe"),
        Arm(name="up_down_cost", actions="up_down", move_cost=0.01, same_as="up_down"),
    ]


class PongFactorialParams(Params):
    """NOOP yes/no x move cost 0 / 0.01 on the win preset: reads the arms' preset results (factorial.py)."""

    arms: list[Arm] = Field(default_factory=_default_arms, min_length=2)
    cap_games: int = Field(1500, ge=100, le=1_000_000)  # outcomes within this many training games
    progress_mean: float = Field(-10.0, ge=-21.0, le=21.0)  # games until the 100-game mean reached this
    window: int = Field(100, ge=1, le=100_000)
    # pairs of arm names compared by exact tests (a vs b)
    comparisons: list[list[str]] = Field(
        default_factory=lambda: [["noop", "up_down"], ["recipe", "up_down"], ["recipe", "noop"]]
    )

    @model_validator(mode="after")
    def _arms_consistent(self):
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct (got {names})")
        trained = {a.name for a in self.arms if a.stage}
        for a in self.arms:
            if a.same_as is not None and a.same_as not in trained:
                raise ValueError(
                    f"arm {a.name}: same_as {a.same_as!r} is not a trained arm; allowed: {sorted(trained)}"
                )
        for pair in self.comparisons:
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(names):
                raise ValueError(f"comparisons: {pair} is not two different arms of {names}")
        return self


QUESTION = (
    "In REINFORCE (loss = sum(reward * cross_entropy)), how does a negative reward make the agent avoid an action? "
    "What if the sign is flipped, or the loss changed?"
)


# metrics.json (fnmatch patterns over dotted keys): per variant the outcome, its paired exact test against correct,
# the fractions of samples that moved the right way (real updates and probe), the loss-value correlation (raw and
# detrended); the fixed-batch result; every verdict (flags: +1 / 0 / -1) and the seed counts beside them; the
# reference policies. No per-seed lists (stats.json), no configuration counts.
# the correct variant's loss-return correlation, copied to the top level of the metrics (analysis.py)
CORRECT_CORRELATION_KEYS = (
    "loss_value_return_corr",
    "loss_value_return_corr_ci_low",
    "loss_value_return_corr_ci_high",
    "loss_value_return_corr_detrended",
    "loss_value_return_corr_detrended_ci_low",
    "loss_value_return_corr_detrended_ci_high",
    "loss_trend_corr",
    "return_trend_corr",
)
_PER_VARIANT = (
    "final_return_mean",
    "final_return_diff_vs_correct",
    "p_exact_vs_correct",
    "p_exact_min",
    "adv_neg_logp_down_fraction",
    "adv_pos_logp_up_fraction",
    "probe_adv_neg_logp_down_fraction",
    "probe_adv_pos_logp_up_fraction",
    "loss_value_return_corr",
    "loss_value_return_corr_detrended",
)
_COMMON = (
    *(f"variants.*.{k}" for k in _PER_VARIANT),
    "variants.correct.probe_corr",
    "variants.flipped.probe_corr",
    "variants.pow.share_likely_adv_neg",
    "variants.correct.share_likely_adv_neg",
    "variants.abs.sum_negative_update_fraction",
    *CORRECT_CORRELATION_KEYS,
    "flags.*",
    "seed_counts.*",
)
# the cosines with grad J (gradient.py), headline only: each variant's mean cosine per checkpoint at the correct
# run's policies (the lead table's first block), pow's weight share on A < 0 and its own policies' entropy; their
# intervals, the values at each variant's own policies, grad J's noise and the rest are in stats.json (the
# report and summary quote them from there), and every verdict is a flag
GRADIENT_HEADLINE = (
    "gradient.at_correct.*.mean",
    "gradient.pow.*.pow_weight_share_adv_neg.mean",
    "gradient.policies.pow.*.entropy.mean",
)
CARTPOLE_HEADLINE = (
    *_COMMON,
    *GRADIENT_HEADLINE,
    "variants.*.episodes_to_solve_median",
    "fixed_batch.loss_before",
    "fixed_batch.loss_after_k_steps",
    "fixed_batch.eval_return_before",
    "fixed_batch.eval_return_after",
    "reference.random_return_mean",
    "reference.always_left_return_mean",
)
PONG_HEADLINE = (
    *_COMMON,
    "variants.*.improvement_mean",
    "reference.random_return_mean",
)


# the parent run's metrics (Stage.answer)
CARTPOLE_ANSWER = (
    "gradient.at_correct.*.u30.mean",
    "gradient.policies.pow.u30.entropy.mean",
    "gradient.pow.at_correct.u30.pow_weight_share_adv_neg.mean",
    "variants.*.final_return_mean",
)
PONG_ANSWER = (
    "variants.*.final_return_mean",
    "variants.*.improvement_mean",
    "variants.*.probe_corr",
    "variants.*.p_exact_vs_correct",
    "loss_value_return_corr",
    "loss_value_return_corr_detrended",
    "reference.random_return_mean",
)
WIN_ANSWER = (
    "win.cap_games",
    "win.*.seeds_won",
    "win.*.median_seconds_to_win",
    "win.*.median_games_to_win",
    "win.*.median_frames_to_win",
    "win.*.median_games_to_progress",
)
FACTORIAL_ANSWER = ("arms.*.seeds_won", "arms.*.games_to_progress_median", "tests.*.games_to_progress_p")


def _stage(
    name: str,
    where: str,
    params: type[Params],
    run: str,
    headline: tuple[str, ...] = (),
    answer: tuple[str, ...] = WIN_ANSWER,
) -> Stage:
    return Stage(
        name=name,
        question=f"{QUESTION} ({where})",
        params=params,
        run=f"gradlab.studies.pg.study:{run}",
        headline=headline,
        answer=answer,
        preset=where.endswith("; preset"),
    )


STAGES = [
    _stage("pg_cartpole", "CartPole-v1", CartPoleParams, "run_cartpole", CARTPOLE_HEADLINE, CARTPOLE_ANSWER),
    _stage("pg_pong", "Atari Pong", PongParams, "run_pong", PONG_HEADLINE, PONG_ANSWER),
    _stage("pg_pong_win", "Atari Pong, trained until it beats the built-in AI; preset", PongWinParams, "run_pong_win"),
    _stage(
        "pg_pong_fast",
        "Atari Pong, the win preset with 3x its learning rate until it beats the built-in AI; preset",
        PongWinParams,
        "run_pong_win",
    ),
    _stage(
        "pg_pong_tuned",
        "Atari Pong, the second search's best configuration (Adam, 4 games per update) until it beats the built-in "
        "AI; preset",
        PongWinParams,
        "run_pong_win",
    ),
    _stage(
        "pg_pong_noop",
        "Atari Pong, the question's NOOP/UP/DOWN without the move cost; preset",
        PongRecipeParams,
        "run_pong_win",
    ),
    _stage(
        "pg_pong_factorial",
        "Atari Pong, NOOP yes/no x move cost 0/0.01 on the win preset, from the arms' preset results; preset",
        PongFactorialParams,
        "run_pong_factorial",
        answer=FACTORIAL_ANSWER,
    ),
    _stage(
        "pg_pong_recipe",
        "Atari Pong, the question's NOOP/UP/DOWN and move cost; preset",
        PongRecipeParams,
        "run_pong_win",
    ),
]
