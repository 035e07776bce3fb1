"""Lightning set-up shared by every study: CPU by default, quiet, no hidden logging."""

from __future__ import annotations

import logging
import os
import signal
import warnings
from functools import cache

from gradlab.settings import current

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*GPU available but not used.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__`.*")


@cache
def _trainer_class():
    import pytorch_lightning as pl

    class _RememberInterrupt(pl.Callback):
        def __init__(self):
            self.exception: BaseException | None = None

        def on_exception(self, trainer, pl_module, exception):
            self.exception = exception

    class Trainer(pl.Trainer):
        """Lightning turns Ctrl-C into ``sys.exit(1)`` and ignores SIGINT afterwards; gradlab
        needs the interrupt itself (runs end KILLED, exit 130/143), so it is re-raised."""

        def __init__(self, *args, callbacks=None, **kwargs):
            self._interrupt = _RememberInterrupt()
            super().__init__(*args, callbacks=[*(callbacks or []), self._interrupt], **kwargs)

        def _reraise_interrupt(self, fn, *args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SystemExit:
                if isinstance(self._interrupt.exception, KeyboardInterrupt):
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    raise self._interrupt.exception from None
                raise

        def fit(self, *args, **kwargs):
            return self._reraise_interrupt(super().fit, *args, **kwargs)

        def validate(self, *args, **kwargs):
            return self._reraise_interrupt(super().validate, *args, **kwargs)

        def test(self, *args, **kwargs):
            return self._reraise_interrupt(super().test, *args, **kwargs)

        def predict(self, *args, **kwargs):
            return self._reraise_interrupt(super().predict, *args, **kwargs)

    return Trainer


def make_trainer(max_steps: int = -1, max_epochs: int | None = None, progress: bool = False, **kwargs):
    """A ``pl.Trainer`` with no logger, checkpoints or summaries of its own.

    gradlab logs through :mod:`gradlab.tracking`; studies keep per-step values
    on the module and log each curve in one batch. ``GRADLAB_ACCELERATOR``
    (default ``cpu``) selects the Lightning accelerator.
    """
    options = dict(
        accelerator=current().accelerator,
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
    return _trainer_class()(**options)


def make_fabric():
    """A launched ``lightning.fabric.Fabric`` for loops that gradlab drives itself.

    The Trainer's loop dispatches some thirty hooks per step, about 0.3 ms on this CPU;
    a study made of hundreds of short trials of ~1 ms steps (mdn) would spend half its
    time there. Fabric keeps Lightning's device placement, precision and backward while
    the study writes the loop. Same accelerator choice (``GRADLAB_ACCELERATOR``) and the
    same determinism as :func:`make_trainer`.

    One Fabric per process and accelerator, reused by every trial: constructing one scans every
    installed distribution's entry points for callback factories (~60 ms here, as long as a
    short mdn trial), and a single-device Fabric keeps no state between ``setup`` calls.
    """
    import torch

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return _launched_fabric(current().accelerator)


@cache
def _launched_fabric(accelerator: str):
    from lightning_fabric import Fabric

    fabric = Fabric(accelerator=accelerator, devices=1)
    fabric.launch()
    return fabric


# --------------------------------------------------------------------------- shared scaffolding of the studies
def _data():
    from torch.utils.data import DataLoader, IterableDataset

    return DataLoader, IterableDataset


@cache
def _step_indices_class():
    _, IterableDataset = _data()

    class StepIndices(IterableDataset):
        """Yields the step indices ``start, ..., stop - 1``: the module holds its data (full batch, batch order)."""

        def __init__(self, stop: int, start: int = 0):
            self.start, self.stop = start, stop

        def __iter__(self):
            return iter(range(self.start, self.stop))

    return StepIndices


def step_indices(stop: int, start: int = 0):
    """A DataLoader of the step indices ``start .. stop - 1``, one per training step (no batching, no workers)."""
    DataLoader, _ = _data()
    return DataLoader(_step_indices_class()(stop, start), batch_size=None)


def fit(module, steps: int, callbacks=(), start: int = 0, **trainer_options):
    """Train ``module`` with :func:`make_trainer` for the steps ``start .. steps - 1``; returns the Trainer.

    ``training_step`` receives the step index as its batch, so the module holds its own data. Every study's
    LightningModule trains through this one function instead of building its own Trainer.
    """
    trainer = make_trainer(max_steps=steps, callbacks=list(callbacks), **trainer_options)
    trainer.fit(module, train_dataloaders=step_indices(steps, start))
    return trainer


OPTIMIZERS = ("sgd", "adam", "rmsprop")


def make_optimizer(name: str, params, lr: float, **options):
    """``torch.optim`` optimizer ``name`` (one of :data:`OPTIMIZERS`) with ``lr`` and its own ``options``.

    An unknown name is refused (ValueError naming the allowed ones), never replaced by a default.
    """
    import torch

    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return classes[name](params, lr=lr, **options)
