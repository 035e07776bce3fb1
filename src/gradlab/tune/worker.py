"""One tuning trial in a worker process (local pool) or a Ray task: the sweep's trial, run as an Optuna trial.

The job is the sweep's (:func:`gradlab.sweep.worker.run_trial`: the stage through
:func:`gradlab.runner.run_stage` with ``parent_run`` set) plus ``tune``: what the pruning hook needs,
put in :data:`gradlab.tune.report.ENV` for the trial and every process it starts.
"""

from __future__ import annotations

import json
import os

from gradlab.sweep.worker import run_trial
from gradlab.tune.report import ENV


def run_tune_trial(job: dict) -> dict:
    previous = os.environ.get(ENV)
    os.environ[ENV] = json.dumps(job["tune"])
    try:
        return run_trial(job)
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
