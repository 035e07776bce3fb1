"""`gradlab metrics`: every stage's headline numbers (results/STAGE/metrics.json) as one vertical table.

`dvc metrics show` puts all stages' keys side by side (hundreds of columns); here each key is a row:
stage, key, value and, where the stage reports one, its interval (a key's ``*_ci_low`` / ``*_ci_high``
pair printed beside the value it belongs to instead of as two more rows). ``--diff REV`` lists only the
keys whose value differs from the metrics.json committed at git revision REV (added and removed keys too).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from gradlab.config import flatten
from gradlab.headline import read_metrics, unwrap

CI_LOW, CI_HIGH = "_ci_low", "_ci_high"
VALUE_SUFFIXES = ("", "_mean", "_median", "_rate")  # where the value of an interval P_ci_low/P_ci_high lives
WIDTH = 120
MISSING = "-"


def fmt(value: object) -> str:
    """Booleans and integers as they are, floats to 4 significant digits (the files keep every digit)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows(flat: dict[str, object]) -> list[tuple[str, str, str]]:
    """(key, value, interval) per headline number; a CI pair joins the row of its value when the value is there."""
    intervals, attached = {}, set()
    for key in flat:
        if key.endswith(CI_LOW) and key[: -len(CI_LOW)] + CI_HIGH in flat:
            base = key[: -len(CI_LOW)]
            owner = next((base + s for s in VALUE_SUFFIXES if base + s in flat), None)
            interval = f"[{fmt(flat[key])}, {fmt(flat[base + CI_HIGH])}]"
            intervals[owner or base + "_ci"] = interval
            attached |= {key, base + CI_HIGH}
    out = []
    for key, value in flat.items():
        if key in attached:
            if key.endswith(CI_LOW) and key[: -len(CI_LOW)] + "_ci" in intervals:  # an interval without its value
                base = key[: -len(CI_LOW)]
                out.append((base + "_ci", "", intervals[base + "_ci"]))
            continue
        out.append((key, fmt(value), intervals.get(key, "")))
    return out


def read(path: Path) -> dict[str, object]:
    return flatten(read_metrics(path)) if path.exists() else {}


def committed(results: Path, stage: str, rev: str) -> dict[str, object]:
    """metrics.json of ``stage`` at git revision ``rev`` ({} where the file is not in that revision).
    Raises ValueError when ``rev`` is not a revision of the repository holding ``results``."""
    cwd = results.parent
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=cwd, capture_output=True)
    if ok.returncode != 0:
        raise ValueError(f"--diff: {rev!r} is not a git revision of {cwd}")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True).stdout
    rel = (results / stage / "metrics.json").resolve().relative_to(Path(top.strip()).resolve())
    shown = subprocess.run(["git", "show", f"{rev}:{rel.as_posix()}"], cwd=cwd, capture_output=True, text=True)
    return flatten(unwrap(json.loads(shown.stdout), stage)) if shown.returncode == 0 else {}


def table(lines: Iterable[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Left-aligned columns; the key column is cut (middle elided) so that a line fits in WIDTH."""
    lines = [header, *lines]
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    over = sum(widths) + 2 * (len(widths) - 1) - WIDTH
    if over > 0:
        widths[1] = max(len(header[1]), widths[1] - over)
    out = []
    for r in lines:
        cells = [_cut(c, w) if i == 1 else c for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def show(results: Path, stages: list[str]) -> str:
    body = [(s, *r) for s in stages for r in rows(read(results / s / "metrics.json"))]
    return table(body, ("stage", "key", "value", "interval"))


def diff(results: Path, stages: list[str], rev: str) -> str:
    body = []
    for s in stages:
        now, then = read(results / s / "metrics.json"), committed(results, s, rev)
        for key in [*then, *(k for k in now if k not in then)]:
            old, new = then.get(key, MISSING), now.get(key, MISSING)
            if old != new:
                body.append((s, key, MISSING if old is MISSING else fmt(old), MISSING if new is MISSING else fmt(new)))
    if not body:
        return f"no headline number differs from {rev}"
    return table(body, ("stage", "key", rev, "workspace"))
