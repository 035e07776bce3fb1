"""The NaN doctor as a Lightning callback (imports pytorch_lightning only when asked for)."""

from __future__ import annotations

import torch

from gradlab.doctor.doctor import Found, NanDoctor, _finite_all
from gradlab.doctor.facts import is_float


def make_callback(doctor: NanDoctor):
    """A ``pytorch_lightning.Callback`` with ``doctor``'s cheap checks; a bad step is replayed under tracing.

    Per batch: buffers and RNG states are saved at the batch start; the loss is checked before ``backward``, the
    gradients and buffers before the optimizer step (the parameters and optimizer state are still the pre-step
    ones there, so the replay of ``training_step`` + ``backward`` is exact), the parameters and optimizer state
    after the batch. At the first non-finite value it raises :class:`gradlab.NonFiniteError` (``on_find="raise"``)
    or stops the trainer with the report in ``doctor.report``.
    """
    try:
        import pytorch_lightning as pl
    except ImportError:  # pragma: no cover - the unified package
        import lightning.pytorch as pl

    class NanDoctorCallback(pl.Callback):
        """Cheap non-finite checks each step; the first bad step replayed op by op (see gradlab.nan_doctor)."""

        def __init__(self):
            self.doctor = doctor
            self._snap = None
            self._batch = None

        def _models(self, pl_module):
            if not doctor.models:
                doctor.models = [pl_module]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._models(pl_module)
            self._snap = doctor._snapshot()
            self._batch = (batch, batch_idx)

        def on_before_backward(self, trainer, pl_module, loss):
            if is_float(loss) and not _finite_all([loss]):
                self._replay(trainer, pl_module, Found("loss", "loss", doctor.frames.here(), value=loss))

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if optimizer not in doctor.optimizers:
                doctor.optimizers.append(optimizer)
            try:
                doctor._pre_step(optimizer, (), {})
            except Found as found:
                self._replay(trainer, pl_module, found)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for optimizer in trainer.optimizers:
                try:
                    doctor._post_step(optimizer, (), {})
                except Found as found:
                    self._deliver(trainer, doctor._post_mortem(found), None)
                    return

        def _replay(self, trainer, pl_module, found: Found):
            batch, batch_idx = self._batch

            def step():
                out = pl_module.training_step(batch, batch_idx)
                loss = out["loss"] if isinstance(out, dict) else out
                if isinstance(loss, torch.Tensor) and loss.requires_grad:
                    loss.backward()
                return loss

            doctor._restore(self._snap)
            report = doctor._replay(step, (), {}, found, None)
            doctor._restore(self._snap)
            self._deliver(trainer, report, None)

        def _deliver(self, trainer, report, error):
            trainer.should_stop = True
            doctor._deliver(report, error)

    return NanDoctorCallback()
