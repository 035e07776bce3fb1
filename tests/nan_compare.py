"""The same planted bugs under ``gradlab doctor`` and under ``torch.autograd.detect_anomaly()``, side by side.

``compare(bug)`` runs one planted script both ways and says, for each tool: did it stop with a diagnosis, did it
name the op that made the first non-finite value, did it name the user's line, did it stop in the forward pass
(where most of these bugs start), and did it give a cause and a fix. ``table(rows)`` renders docs/nan_doctor.md's
generated block; ``causes_table()`` the cause classes.
"""

from __future__ import annotations

import re
import runpy
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from nan_planted import Planted

from gradlab.doctor import CAUSES, NonFiniteReport
from gradlab.doctor.script import diagnose_script

FORWARD_PHASES = ("input batch", "forward", "loss", "buffers")
# the autograd node names of the ops the planted bugs name
NODE_ALIASES = {"linear": ("addmm", "mm", "linear"), "batch_norm": ("batchnorm",), "div": ("div", "reciprocal")}


@dataclass
class Row:
    """One planted bug: what the doctor said and what detect_anomaly said."""

    bug: Planted
    report: NonFiniteReport | None
    anomaly_stopped: bool
    anomaly_node: str | None
    anomaly_line: bool
    anomaly_error: str | None

    @property
    def doctor_op(self) -> bool:
        return self.report is not None and self.bug.op in self.report.op

    @property
    def doctor_line(self) -> bool:
        return self.report is not None and (self.report.file, self.report.line) == (str(self.bug.path), self.bug.line)

    @property
    def doctor_cause(self) -> bool:
        return self.report is not None and self.report.cause == self.bug.cause

    @property
    def doctor_forward(self) -> bool:
        return self.report is not None and self.report.phase in FORWARD_PHASES

    @property
    def anomaly_op(self) -> bool:
        if not self.anomaly_node:
            return False
        node = self.anomaly_node.lower()
        return any(alias in node for alias in NODE_ALIASES.get(self.bug.op, (self.bug.op,)))


def run_doctor(bug: Planted) -> NonFiniteReport | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diagnose_script(bug.path)


def run_anomaly(bug: Planted) -> tuple[bool, str | None, bool, str | None]:
    """(stopped with an anomaly error, the node it names, whether its forward traceback has the bug's line, error)."""
    caught: list[str] = []
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, error = [str(bug.path)], None
    sys.path.insert(0, str(bug.path.parent))
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings(record=True) as records, torch.autograd.detect_anomaly():
            warnings.simplefilter("always")
            try:
                runpy.run_path(str(bug.path), run_name="__main__")
            except Exception as exc:  # noqa: BLE001 -- the tool's answer is what it raised
                error = exc
        caught = [str(r.message) for r in records]
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    text = str(error) if error is not None else ""
    match = re.search(r"Function '(\w+)' returned nan", text)
    stopped = match is not None
    trace = "\n".join(m for m in caught if "Traceback of forward call" in m or "File " in m)
    line = stopped and f'File "{bug.path}", line {bug.line}' in trace
    return stopped, match.group(1) if match else None, line, type(error).__name__ if error is not None else None


def compare(bug: Planted) -> Row:
    return Row(bug, run_doctor(bug), *run_anomaly(bug))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def table(rows: list[Row]) -> str:
    """The comparison table (markdown), one row per planted bug, and a totals row."""
    head = [
        "| planted bug | cause class | doctor: op | doctor: your line | doctor: stops in forward | doctor: cause "
        "| detect_anomaly: answer | detect_anomaly: op | detect_anomaly: your line |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    body = []
    for r in rows:
        if r.anomaly_stopped:
            answer = f"`{r.anomaly_node}` returned nan"
        elif r.anomaly_error:
            answer = f"no diagnosis (the script's own {r.anomaly_error})"
        else:
            answer = "nothing: the run goes on"
        op = f"`{r.report.op}`" if r.report else "-"
        body.append(
            f"| `{r.bug.name}` | `{r.bug.cause}` | {op} {_yes(r.doctor_op)} | {_yes(r.doctor_line)} "
            f"| {_yes(r.doctor_forward)} | {_yes(r.doctor_cause)} | {answer} | {_yes(r.anomaly_op)} "
            f"| {_yes(r.anomaly_line)} |"
        )
    n = len(rows)
    totals = (
        f"| **{n} bugs** | {len({r.bug.cause for r in rows})} classes | {sum(r.doctor_op for r in rows)} of {n} "
        f"| {sum(r.doctor_line for r in rows)} of {n} | {sum(r.doctor_forward for r in rows)} of {n} "
        f"| {sum(r.doctor_cause for r in rows)} of {n} | {sum(r.anomaly_stopped for r in rows)} of {n} stopped "
        f"| {sum(r.anomaly_op for r in rows)} of {n} | {sum(r.anomaly_line for r in rows)} of {n} |"
    )
    return "\n".join(head + body + [totals])


def causes_table() -> str:
    """Every cause class with its symptom, why and fix (markdown)."""
    lines = ["| cause class | symptom | why | fix |", "|---|---|---|---|"]
    for c in CAUSES.values():
        lines.append(f"| `{c.name}` | {c.symptom} | {c.why} | {c.fix} |")
    return "\n".join(lines)


def splice(text: str, begin: str, end: str, block: str, where: str) -> str:
    """``text`` with the part between the ``begin`` and ``end`` markers replaced by ``block``."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{where}: needs exactly one generated block {begin} ... {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def docs_path() -> Path:
    return Path(__file__).resolve().parents[1] / "docs" / "nan_doctor.md"
