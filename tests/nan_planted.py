"""The planted non-finite bugs of tests/planted_nan/: each script, what the doctor must say about it, and its line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PLANTED = Path(__file__).resolve().parent / "planted_nan"


@dataclass(frozen=True)
class Planted:
    """One planted bug: its script, the expected cause class, op and phase, and the line marked ``# BUG``."""

    path: Path
    cause: str
    op: str
    phase: str
    line: int

    @property
    def name(self) -> str:
        return self.path.stem


def planted() -> list[Planted]:
    """Every planted bug, read from the ``# expect:`` header and the ``# BUG`` marker of its script."""
    out = []
    for path in sorted(PLANTED.glob("*.py")):
        lines = path.read_text().splitlines()
        expect = dict(re.findall(r"(\w+)=(.+?)(?= \w+=|$)", lines[0].removeprefix("# expect:").strip()))
        line = next(k for k, text in enumerate(lines, start=1) if "# BUG" in text)
        out.append(Planted(path, expect["cause"], expect["op"], expect["phase"], line))
    return out
