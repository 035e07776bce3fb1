"""What every report section holds: the question, the answer, the evidence, the key figure, the caveats."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    stage: str
    title: str
    question: str
    answer: str
    evidence: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # paths relative to results/<stage>/
    caveats: list[str] = field(default_factory=list)
