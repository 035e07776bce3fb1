"""Run one stage: validate, check the store, seed, write to a temp folder, publish.

``gradlab run STAGE`` and ``python pipelines/STAGE.py`` both end up in
:func:`run_stage`. Exit codes: 0 success, 1 runtime failure, 2 bad input,
130 interrupted (SIGINT), 143 terminated (SIGTERM): :class:`gradlab.process.ExitCode`.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from gradlab.config import (
    ConfigError,
    Params,
    apply_overrides,
    flatten,
    load_yaml,
    to_plain,
    validate_section,
)
from gradlab.context import StageContext, to_jsonable, write_json
from gradlab.headline import answer, headline, metrics_file, verdict_tags
from gradlab.numerics import check, pin_environment, pin_runtime
from gradlab.process import ExitCode, Terminated, guarded, interrupts_held, publish, refuse, sigterm_raises
from gradlab.settings import Settings, active
from gradlab.tracking import TrackingError, open_tracker, params_hash, stage_run_name, standard_tags

pin_environment()  # `python pipelines/<stage>.py` imports this module first, before NumPy (gradlab.numerics)

__all__ = ["ExitCode", "Terminated", "guarded", "main", "publish", "resolve_params", "run_stage"]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_FROZEN = False


def freeze_imports() -> None:
    """Move everything alive now (the imported modules: torch, MLflow, Lightning, ...) out of the GC's sight.

    Those ~700 000 objects live as long as the process, yet each full collection walks them:
    ~0.4 s a time on this machine, set off every few seconds of allocation-heavy work (a
    figure, a batch of MLflow metrics). ``gc.freeze`` leaves them out of every later
    collection. Once per process, after the stage's study module is imported.
    """
    global _FROZEN
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


def resolve_params(stage: str, sets: Sequence[str] = (), params_file: str | Path = "params.yaml") -> Params:
    """params.yaml section of ``stage`` with overrides applied, validated (ConfigError if bad)."""
    from gradlab.stages import get_stage

    spec = get_stage(stage)
    for text in sets:
        key = text.partition("=")[0].strip()
        if key.split(".")[0] != stage:
            raise ConfigError(key, f"overrides must start with the stage name '{stage}.'")
    raw = apply_overrides(load_yaml(Path(params_file)), list(sets))
    return validate_section(stage, spec.params, raw.get(stage))


def run_stage(
    stage: str,
    sets: Sequence[str] = (),
    params_file: str | Path = "params.yaml",
    resume: bool = False,
    *,
    out_dir: Path | None = None,
    parent_run: str | None = None,
    run_name: str | None = None,
    tags: dict | None = None,
    settings: Settings | None = None,
) -> int:
    """Run ``stage`` end to end and return the process exit code.

    By default the outputs go to ``results/<stage>`` and the stage's run is a
    top-level run of experiment ``gradlab/<stage>``. A sweep passes ``out_dir``
    (where this trial's outputs go), ``parent_run`` (the sweep's run, so this
    invocation becomes its child), ``run_name`` and extra ``tags``. ``settings`` default to the
    environment's (:class:`gradlab.settings.Settings`), read once here.
    """
    try:
        settings = settings or Settings.from_env()
        params = resolve_params(stage, sets, params_file)
        tracker = open_tracker(f"gradlab/{stage}", settings.tracking_uri)
    except ConfigError as err:
        return refuse(err, ExitCode.BAD_INPUT)
    except TrackingError as err:
        return refuse(err, ExitCode.FAILED)

    from gradlab.stages import get_stage

    results = settings.results
    final = Path(out_dir) if out_dir else results / stage
    checkpoints = final.with_name(f".checkpoints-{final.name}") if out_dir else results / ".checkpoints" / stage
    plain = to_plain(params)
    digest = params_hash(plain)
    try:
        resume_id = resumable_run(checkpoints, digest) if resume else None
    except ConfigError as err:
        return refuse(err, ExitCode.BAD_INPUT)
    if not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)

    with sigterm_raises(), active(settings):  # SIGTERM: runs end KILLED, exit 143
        staging = results / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{stage}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        import torch

        threads = torch.get_num_threads()  # a study may change it; the next stage in this process must not notice
        try:
            numerics = pin_runtime()  # fixed threads, oneDNN off (gradlab.numerics)
            for problem in check():
                print(f"warning: {stage}: {problem}", file=sys.stderr)
            run_tags = {
                **(tags or {}),
                "gradlab.numerics": numerics["mode"],
                "gradlab.cpu_capability": numerics["torch_cpu_capability"],
            }
            seed_everything(int(getattr(params, "seed", 0)))
            start = time.perf_counter()
            if parent_run is None:  # a sweep describes its experiment once, not in every trial
                tracker.describe_experiment(f"gradlab/{stage}", get_stage(stage).question)
            with tracker.run(
                f"gradlab/{stage}",
                run_name or stage_run_name(stage),
                parent=parent_run,
                tags=standard_tags(stage, plain, run_tags),
                params=flatten(plain),
                resume_id=resume_id,
            ) as parent:
                checkpoints.mkdir(parents=True, exist_ok=True)
                write_json(checkpoints / "run.json", {"run_id": parent.id, "params_hash": digest})
                ctx = StageContext(
                    stage=stage,
                    params=params,
                    out=tmp,
                    tracker=tracker,
                    parent=parent,
                    checkpoints=checkpoints,
                    resume=resume,
                )
                spec = get_stage(stage)
                study = spec.load()
                freeze_imports()
                metrics = to_jsonable(study(params, ctx))
                write_json(tmp / "stats.json", metrics)
                top = headline(metrics, spec.headline)
                write_json(tmp / "metrics.json", metrics_file(stage, top))
                parent.log_metrics(answer(top, spec.answer))  # the rest: the metrics.json/stats.json artifacts
                parent.set_tags(verdict_tags(top))
                if (tmp / "summary.md").exists():
                    parent.describe((tmp / "summary.md").read_text())
                parent.log_metrics({"stage/seconds": time.perf_counter() - start})
                parent.log_artifacts(tmp)
            with interrupts_held():  # a reader never sees a half-published folder
                publish(tmp, final)
                shutil.rmtree(checkpoints, ignore_errors=True)
            print(f"{stage}: results in {final}", file=sys.stderr)
            return ExitCode.OK
        except Terminated:
            print(f"{stage}: terminated; previous results left intact", file=sys.stderr)
            return ExitCode.TERMINATED
        except KeyboardInterrupt:
            print(f"{stage}: interrupted; previous results left intact", file=sys.stderr)
            return ExitCode.INTERRUPTED
        except ConfigError as err:  # a study may refuse a combination only it can judge
            return refuse(err, ExitCode.BAD_INPUT)
        except Exception as err:
            traceback.print_exc()
            print(f"error: stage {stage} failed: {type(err).__name__}: {err}", file=sys.stderr)
            return ExitCode.FAILED
        finally:
            torch.set_num_threads(threads)
            shutil.rmtree(tmp, ignore_errors=True)


def resumable_run(checkpoints: Path, digest: str) -> str:
    """The run id to continue with ``--resume`` (ConfigError when there is nothing to resume)."""
    import json

    marker = checkpoints / "run.json"
    if not marker.exists():
        raise ConfigError("--resume", f"no interrupted run to resume in {checkpoints}; run without --resume")
    saved = json.loads(marker.read_text())
    if saved.get("params_hash") != digest:
        raise ConfigError(
            "--resume",
            f"parameters changed since the interrupted run (hash {saved.get('params_hash')} vs {digest}); "
            "run without --resume to start over",
        )
    return saved["run_id"]


def main(stage: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pipelines/<stage>.py`` (what dvc.yaml calls)."""
    parser = argparse.ArgumentParser(prog=f"pipelines/{stage}.py", description=f"Run the {stage} stage.")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return guarded(run_stage, stage, args.sets, args.params, args.resume)
