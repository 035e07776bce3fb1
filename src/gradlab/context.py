"""What a study's ``run(p: XParams, ctx: StageContext)`` receives: where to write, how to log."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gradlab.config import Params, to_plain
from gradlab.tracking import Run, Tracker, params_hash
from gradlab.trials import Child, Runs, default_workers, open_child, run_trials

S = TypeVar("S")
R = TypeVar("R")


def to_jsonable(obj: Any) -> Any:
    """numpy/torch scalars and arrays -> plain Python; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


@dataclass
class StageContext:
    stage: str
    params: Params
    out: Path  # temporary output folder, published to results/<stage> on success
    tracker: Tracker
    parent: Run
    checkpoints: Path  # survives interruptions; used by --resume
    resume: bool = False
    progress: bool = field(default_factory=lambda: sys.stderr.isatty())

    @property
    def experiment(self) -> str:
        return f"gradlab/{self.stage}"

    def path(self, relative: str) -> Path:
        p = self.out / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @contextmanager
    def child(self, variant: str, seed: int, params: dict[str, Any] | None = None, tags=None) -> Iterator[Run]:
        """A child run named ``<variant>__seed<k>`` under the stage's parent run, for what the stage computes
        itself (trials get theirs from :meth:`run_trials`).

        The child carries the stage's resolved parameters (copied from the parent run, see
        :meth:`gradlab.tracking.Tracker.start_run`) with what is particular to the trial in their place:
        its ``params``, variant and seed; and the parent's source and commit tags.
        """
        with open_child(self.tracker, self.runs(), Child(variant, seed, params or {}, tags or {})) as run:
            yield run

    def runs(self) -> Runs:
        """Where this stage's trial runs go (:mod:`gradlab.trials`): under its run, with its stage and params hash."""
        tags = {"gradlab.stage": self.stage, "gradlab.params_hash": params_hash(to_plain(self.params))}
        return Runs(self.tracker.uri, self.experiment, self.parent.id, tags)

    def run_trials(
        self,
        run_trial: Callable[[S], R],
        specs: Sequence[S],
        child: Callable[[S], Child],
        log: Callable[[Run, S, R], None] | None = None,
        cost: Callable[[S], float] | None = None,
        workers: int | None = None,
        desc: str = "trials",
    ) -> list[R]:
        """``[run_trial(s) for s in specs]`` through :func:`gradlab.trials.run_trials`: the longest first (``cost``)
        on ``workers`` processes (all cores when None), each trial with its child run ``child(spec)`` open
        while it runs and ``log(run, spec, result)`` logged to it; a progress bar on a terminal."""
        bar = self.bar(desc, len(specs))
        try:
            return run_trials(
                run_trial,
                specs,
                workers=workers,
                cost=cost,
                runs=self.runs(),
                child=child,
                log=log,
                tracker=self.tracker,
                progress=None if bar is None else bar.update,
            )
        finally:
            if bar is not None:
                bar.close()

    def workers(self, asked: int | None) -> int:
        """The processes for this stage's trials: ``asked``, else every core (``GRADLAB_WORKERS``)."""
        return asked or default_workers()

    def bar(self, desc: str, total: int) -> Any:
        """A progress bar (``update()``, ``close()``) on a terminal, None otherwise."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(desc=f"{self.stage}: {desc}", total=total, leave=False)

    def write_json(self, relative: str, data: Any) -> Path:
        p = self.path(relative)
        write_json(p, data)
        return p

    def write_csv(self, relative: str, rows) -> Path:
        """Rows as a list of dicts or a DataFrame."""
        import pandas as pd

        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        p = self.path(relative)
        frame.to_csv(p, index=False, float_format="%.10g")
        return p

    def write_text(self, relative: str, text: str) -> Path:
        p = self.path(relative)
        p.write_text(text)
        return p

    def savefig(self, fig, name: str) -> Path:
        from gradlab.plotting import save

        return save(fig, self.path(f"figures/{name}"))

    def track(self, iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
        """A progress bar on a terminal, silent otherwise."""
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=f"{self.stage}: {desc}", total=total, leave=False)
