"""The NaN doctor: the first non-finite value of your own training loop, its origin, cause and fix.

    import gradlab
    doctor = gradlab.nan_doctor(model, optimizer)

    @doctor.step
    def train_step(x, y): ...            # cheap checks; a bad step is replayed op by op

    with gradlab.nan_doctor(mode="trace"): ...   # trace every op of a block
    trainer = pl.Trainer(callbacks=[doctor.lightning_callback()])

``python -m gradlab doctor script.py ARGS`` runs an unmodified script under it. :data:`NAN_CAUSES` is the table
of cause classes (symptom, why, fix) that the reports and the mdn study share.
"""

from gradlab.doctor.causes import CAUSES, Cause, Evidence, classify, nan_causes
from gradlab.doctor.doctor import NanDoctor, diagnose, nan_doctor
from gradlab.doctor.facts import TensorFacts, facts
from gradlab.doctor.report import NonFiniteError, NonFiniteReport
from gradlab.doctor.script import diagnose_script

NAN_CAUSES = CAUSES

__all__ = [
    "CAUSES",
    "NAN_CAUSES",
    "Cause",
    "Evidence",
    "NanDoctor",
    "NonFiniteError",
    "NonFiniteReport",
    "TensorFacts",
    "classify",
    "diagnose",
    "diagnose_script",
    "nan_causes",
    "facts",
    "nan_doctor",
]
