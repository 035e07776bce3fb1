"""The replication table of a stage in the report and the docs: each verdict, original vs replication."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FILE = "replication.json"  # written by gradlab.replicate


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stats_digest(results: Path, stage: str) -> str:
    """The first 12 hex digits of the SHA-256 of ``results/<stage>/stats.json`` (what a report was built from)."""
    path = results / stage / "stats.json"
    return sha256(path)[:12] if path.exists() else "missing"


def load(folder: Path) -> dict | None:
    """``replication.json`` of a stage's results folder, with ``current`` = it compared today's stats.json."""
    path = folder / FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    stats = folder / "stats.json"
    digest = sha256(stats) if stats.exists() else None
    data["current"] = digest is not None and data.get("original", {}).get("stats_sha256") == digest
    return data


def _show(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return (
            f"{int(value):+d}" if float(value).is_integer() and value != 0 else str(int(value) if value == 0 else value)
        )
    return "missing" if value is None else str(value)


def lines(results: Path, stage: str) -> list[str]:
    """Markdown lines: how many verdicts replicated on an independent seed block, and a table of them."""
    data = load(results / stage)
    if data is None:
        return [
            f"**Replication.** None yet (`gradlab replicate {stage}` reruns the stage on an independent seed block)."
        ]
    stale = (
        ""
        if data["current"]
        else (
            f" It compared an earlier run of the stage: the results changed since; rerun `gradlab replicate {stage}`."
        )
    )
    out = [
        f"**Replication.** `gradlab replicate {stage}` reran the stage on seeds from {data['replication']['seed']} "
        f"(the original: from {data['original']['seed']}): {data['verdicts_agree']} of {data['verdicts_total']} "
        f"verdicts replicated.{stale}",
        "",
        "| verdict | original | replication | |",
        "|---|---|---|---|",
    ]
    for key, v in data["verdicts"].items():
        word = "replicated" if v["agree"] else "**not replicated**"
        out.append(f"| `{key}` | {_show(v['original'])} | {_show(v['replication'])} | {word} |")
    return out
