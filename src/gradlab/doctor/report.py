"""The doctor's answer: where the first non-finite value came from, why, and what to change."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from gradlab.doctor.causes import CAUSES, Evidence, classify
from gradlab.doctor.facts import TensorFacts
from gradlab.doctor.frames import SourceLine


@dataclass
class NonFiniteReport:
    """The first non-finite value of a training run, its origin, cause class and fix.

    ``step``: the training step (counted by ``optimizer.step()`` calls, or by calls of a decorated step);
    ``phase``: ``input batch``, ``weights``, ``forward``, ``loss``, ``backward``, ``optimizer step``,
    ``optimizer state``, ``buffers``; ``op``: the operation that produced it (``log``, ``div``, ...; for the
    backward pass the forward op whose derivative did, with ``node`` the autograd node); ``module``: the module
    path (``body.0``; ``""`` outside any module); ``file``/``line``/``code``: the user's own source line (the
    first frame outside torch and gradlab); ``inputs``: facts about the op's inputs; ``cause``: a key of
    :data:`gradlab.NAN_CAUSES`, with its ``why`` and ``fix``; ``exception``: the error the step raised, if any.
    """

    step: int
    phase: str
    op: str
    module: str
    file: str | None
    line: int | None
    code: str
    function: str
    inputs: list[TensorFacts]
    output: TensorFacts | None
    cause: str
    why: str
    fix: str
    tensor: str | None = None
    node: str | None = None
    exception: str | None = None
    masked_by: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """``file:line`` of the user's line (``?`` when the stack had none)."""
        return f"{self.file}:{self.line}" if self.file else "?"

    def lines(self) -> list[str]:
        """The report as a few lines of text."""
        op = self.op + (f" [autograd node {self.node}]" if self.node else "")
        module = f" in module {self.module}" if self.module else ""
        out = [
            f"first non-finite value: step {self.step}, phase {self.phase}",
            f"  op:     {op}{module}" + (f" (tensor {self.tensor})" if self.tensor else ""),
            f"  where:  {self.where} in {self.function}: {self.code}" if self.file else "  where:  (no user frame)",
        ]
        for k, f in enumerate(self.inputs[:4]):
            out.append(f"  input {k}: {f.describe()}")
        if self.output is not None:
            out.append(f"  output: {self.output.describe()}")
        if self.masked_by:
            out.append(f"  then:   dropped from the forward pass by {self.masked_by} (its gradient is not)")
        if self.exception:
            out.append(f"  raised: {self.exception}")
        out.append(f"  cause:  {self.cause}: {self.why}")
        out.append(f"  fix:    {self.fix}")
        out.extend(f"  note:   {n}" for n in self.notes)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        """Plain JSON-ready data (the facts as dicts)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


class NonFiniteError(RuntimeError):
    """Raised by the doctor at the first non-finite value; ``.report`` is the :class:`NonFiniteReport`."""

    def __init__(self, report: NonFiniteReport):
        super().__init__("\n" + str(report))
        self.report = report


def make_report(
    step: int,
    evidence: Evidence,
    module: str,
    where: SourceLine | None,
    *,
    tensor: str | None = None,
    node: str | None = None,
    exception: str | None = None,
    notes: list[str] | None = None,
    cause: str | None = None,
) -> NonFiniteReport:
    """A :class:`NonFiniteReport` from the evidence, classified with :func:`gradlab.doctor.causes.classify`."""
    name = cause or classify(evidence)
    info = CAUSES[name]
    return NonFiniteReport(
        step=step,
        phase=evidence.phase,
        op=evidence.op,
        module=module,
        file=where.file if where else None,
        line=where.line if where else None,
        code=where.code if where else "",
        function=where.function if where else "",
        inputs=list(evidence.inputs),
        output=evidence.output,
        cause=name,
        why=info.why,
        fix=info.fix,
        tensor=tensor,
        node=node,
        exception=exception,
        masked_by=evidence.masked_by,
        notes=list(notes or []),
    )
