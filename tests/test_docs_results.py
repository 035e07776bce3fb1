"""Every result number in the docs and the report is the one in results/: a changed stats.json fails here until
`gradlab report` (or `dvc repro report`) has regenerated them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gradlab.report import docs_blocks
from gradlab.report.build import collect

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "studies"


@pytest.fixture(scope="module")
def fresh_blocks() -> dict[str, str]:
    sections, missing, _ = collect(ROOT / "results")
    return docs_blocks.blocks({sec.stage: sec for sec in sections}, dict(missing), ROOT / "results")


@pytest.mark.parametrize("page", sorted(docs_blocks.pages()))
def test_docs_results_block_is_what_the_results_say(page, fresh_blocks):
    path = DOCS / f"{page}.md"
    text = path.read_text()
    assert text.count(docs_blocks.BEGIN) == 1 and text.count(docs_blocks.END) == 1, f"{path.name}: no results block"
    assert docs_blocks.splice(text, fresh_blocks[page]) == text, (
        f"docs/studies/{page}.md quotes numbers that are not the ones in results/: run `gradlab report`"
    )


def test_a_changed_number_is_caught(tmp_path):
    """The check above can fail: change one number of a copy of the results and the block changes, whether or
    not the number is quoted (the block names the SHA-256 of the stats.json it was generated from)."""
    import json
    import shutil

    shutil.copytree(ROOT / "results" / "input_grad", tmp_path / "input_grad")
    stats = json.loads((tmp_path / "input_grad" / "stats.json").read_text())
    stats["fd"]["max_abs_diff"] = 0.123456
    (tmp_path / "input_grad" / "stats.json").write_text(json.dumps(stats))
    sections, missing, _ = collect(tmp_path)
    changed = docs_blocks.blocks({sec.stage: sec for sec in sections}, dict(missing), tmp_path)["input_grad"]
    assert "0.12" in changed
    text = (DOCS / "input_grad.md").read_text()
    assert docs_blocks.splice(text, changed) != text
    stats["fd"]["max_abs_diff"] = json.loads((ROOT / "results" / "input_grad" / "stats.json").read_text())["fd"][
        "max_abs_diff"
    ]
    stats["an_unquoted_number"] = 1.5
    (tmp_path / "input_grad" / "stats.json").write_text(json.dumps(stats))
    sections, missing, _ = collect(tmp_path)
    unquoted = docs_blocks.blocks({sec.stage: sec for sec in sections}, dict(missing), tmp_path)["input_grad"]
    assert docs_blocks.splice(text, unquoted) != text


def test_report_matches_the_results():
    """reports/REPORT.md holds, line for line, what the committed results give (but for its provenance line)."""
    from gradlab.config import load_yaml
    from gradlab.report.build import render_markdown

    sections, missing, _ = collect(ROOT / "results")
    fresh = render_markdown(sections, missing, load_yaml(ROOT / "params.yaml"), ROOT / "results").splitlines()
    committed = (ROOT / "reports" / "REPORT.md").read_text().splitlines()
    assert len(fresh) == len(committed)
    differ = [(a, b) for a, b in zip(fresh, committed, strict=True) if a != b and not a.startswith("Built from")]
    assert not differ, f"REPORT.md is stale (first difference: {differ[0]}): run `dvc repro report`"


def test_report_provenance_names_a_commit_in_the_history():
    line = next(x for x in (ROOT / "reports" / "REPORT.md").read_text().splitlines() if x.startswith("Built from"))
    sha = re.search(r"git ([0-9a-f]{7,40})", line)
    assert sha, line
    done = subprocess.run(
        ["git", "merge-base", "--is-ancestor", sha.group(1), "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, f"REPORT.md names commit {sha.group(1)}, which is not in the history of HEAD"
