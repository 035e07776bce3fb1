"""What a study's ``run(p: XParams, ctx: StageContext)`` receives: where to write, how to log."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab.config import Params, to_plain
from gradlab.tracking import Run, Tracker, params_hash


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
    def child(
        self,
        variant: str,
        seed: int,
        params: dict[str, Any] | None = None,
        tags=None,
        started: float | None = None,
        ended: float | None = None,
    ) -> Iterator[Run]:
        """One trial: a child run named ``<variant>__seed<k>`` under the stage's parent run.

        The child carries the stage's resolved parameters (copied from the parent run, see
        :meth:`gradlab.tracking.Tracker.start_run`) with what is particular to the trial in their place:
        its ``params``, variant and seed; and the parent's source and commit tags. A trial
        logged after it ran passes ``started``/``ended`` (``time.time()`` seconds) so that the run
        shows when the trial really ran.
        """
        all_params = {"variant": variant, "seed": seed, **(params or {})}
        all_tags = {
            "gradlab.stage": self.stage,
            "gradlab.variant": variant,
            "gradlab.seed": seed,
            "gradlab.params_hash": params_hash(to_plain(self.params)),
        }
        all_tags.update(tags or {})
        with self.tracker.run(
            self.experiment,
            f"{variant}__seed{seed}",
            parent=self.parent.id,
            tags=all_tags,
            params=all_params,
            start_ms=None if started is None else int(started * 1000),
            end_ms=None if ended is None else int(ended * 1000),
        ) as run:
            yield run

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
