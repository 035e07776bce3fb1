"""Lightning set-up shared by every study: CPU by default, quiet, no hidden logging."""

from __future__ import annotations

import logging
import os
import warnings

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*GPU available but not used.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__`.*")


def make_trainer(max_steps: int = -1, max_epochs: int | None = None, progress: bool = False, **kwargs):
    """A ``pl.Trainer`` with no logger, checkpoints or summaries of its own.

    gradlab logs through :mod:`gradlab.tracking`; studies keep per-step values
    on the module and log each curve in one batch. ``GRADLAB_ACCELERATOR``
    (default ``cpu``) selects the Lightning accelerator.
    """
    import pytorch_lightning as pl

    options = dict(
        accelerator=os.environ.get("GRADLAB_ACCELERATOR", "cpu"),
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        max_steps=max_steps,
        max_epochs=max_epochs if max_epochs is not None else (-1 if max_steps > 0 else None),
        deterministic=True,
    )
    options.update(kwargs)
    return pl.Trainer(**options)
