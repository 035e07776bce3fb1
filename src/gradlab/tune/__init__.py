"""Hyperparameter search with pruning: ``gradlab tune SPACE.yaml`` (Optuna; docs/tune.md).

A search-space file names a stage, an objective (a dotted key of the stage's metrics and a direction),
a sampler, a pruner, a trial budget, fixed values and the parameters to search; it is validated against
the stage's parameter model before anything is created (a bad key: exit 2, one line). Each trial is the
stage run by the sweep's machinery (:func:`gradlab.sweep.worker.run_trial` ->
:func:`gradlab.runner.run_stage` with ``parent_run``): an MLflow child run of one parent ``tune__<name>``
in experiment ``gradlab/<stage>``, with its full resolved parameters. Trials are asked from Optuna
when a worker is free (ask-and-tell) and run on a local process pool or on Ray; several ``gradlab tune``
processes may share one study through ``--storage`` (e.g. PostgreSQL).

Pruning: a stage calls :func:`report` with an intermediate value (the pg stages: the 100-game mean
return after each update); the pruner may stop the trial there (:class:`TrialPruned`).

Modules: :mod:`~gradlab.tune.report` (the hook; imported by stages, standard library only),
:mod:`~gradlab.tune.space` (the space file), :mod:`~gradlab.tune.study` (storage, sampler, states),
:mod:`~gradlab.tune.worker` (one trial; run by the sweep's :mod:`~gradlab.sweep.executors`),
:mod:`~gradlab.tune.tables` (trials.csv, summary.md, best.yaml, figure.png), :mod:`~gradlab.tune.command`.
"""

from gradlab.tune.report import TrialPruned, active, report

__all__ = ["TrialPruned", "active", "report"]
