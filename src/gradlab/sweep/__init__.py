"""Parameter sweeps: grid x seeds -> trials, run on a local process pool or on Ray.

``gradlab sweep STAGE --grid key=v1,v2 [--grid ...] --seeds N`` expands the
product of the grid values times N seeds into trials, validates every trial's
parameters up front (a bad value anywhere: exit 2, nothing created), creates one
MLflow parent run ``sweep__<id>`` in experiment ``gradlab/<stage>`` and runs each
trial as :func:`gradlab.runner.run_stage` with ``parent_run`` set, so each trial
is a child run (tagged ``gradlab.sweep_id``) carrying its full resolved config.

Backends: ``local`` (a pool of spawned worker processes, one torch thread each
when workers >= cores) and ``ray`` (the same trial function as Ray tasks; no
address starts a local Ray instance, ``--address auto|ray://...`` joins a
cluster, whose trials must log to an MLflow *server*).

Outputs under ``results/sweeps/<id>/``: ``sweep.json`` (the spec, for
``--resume``), ``trials/<k>/`` (each trial's stage outputs), ``logs/<k>.log``,
``trials.csv`` (one row per trial), ``table.csv`` / ``table.md`` (the metric per
grid point: mean and 95 % CI over seeds) and ``figure.png`` for 1-D and 2-D grids.
Exit codes: 0 every trial finished, 1 some trial failed (the sweep still ran the
others), 2 bad input, 130 interrupted (pending trials cancelled, running ones
KILLED; ``--resume <id>`` continues), 143 terminated (:class:`gradlab.process.ExitCode`).

Modules: :mod:`~gradlab.sweep.grid` (grid, trials, spec), :mod:`~gradlab.sweep.worker` (one
trial), :mod:`~gradlab.sweep.executors` (local pool, Ray), :mod:`~gradlab.sweep.tables`
(tables and figure), :mod:`~gradlab.sweep.command` (the command and ``--resume``).
"""

from gradlab.sweep.command import sweep
from gradlab.sweep.grid import SweepSpec, Trial, expand, parse_grid, split_values
from gradlab.sweep.tables import markdown_table, plot, summary_table, trial_rows
from gradlab.sweep.worker import run_trial

__all__ = [
    "SweepSpec",
    "Trial",
    "expand",
    "markdown_table",
    "parse_grid",
    "plot",
    "run_trial",
    "split_values",
    "summary_table",
    "sweep",
    "trial_rows",
]
