"""A trial's trained model as artifacts of its MLflow child run, so that the run can be reloaded and evaluated again.

``model/state.pt`` holds the state dict (``torch.save``; read back with ``weights_only=True``) and ``model/model.json``
what a study needs to rebuild the network (its class and shape) and the evaluation the trial logged. Each study that
trains has its ``load_logged(run_id)`` and ``reevaluate(run_id)`` beside its trial; pg keeps its own files
(``policy.pt``, ``winner.pt``: gradlab.studies.pg.policy).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from gradlab.tracking import Run, download_artifacts

FOLDER = "model"


def log_model(run: Run, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """``state`` (a state dict) and ``meta`` (plain data) as ``model/state.pt`` and ``model/model.json`` of ``run``."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(state, folder / "state.pt")
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=float))
        run.log_artifacts(folder, FOLDER)


def load_model(run_id: str, tracking_uri: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state dict and ``model.json`` that run ``run_id`` logged with :func:`log_model`."""
    import torch

    folder = download_artifacts(run_id, FOLDER, tracking_uri)
    if not (folder / "state.pt").exists():
        raise FileNotFoundError(f"run {run_id} logged no model (no {FOLDER}/state.pt among its artifacts)")
    meta = json.loads((folder / "model.json").read_text())
    return torch.load(folder / "state.pt", weights_only=True), meta
