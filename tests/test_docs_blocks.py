"""Every ```python block of docs/studies/*.md runs as written: alone, in a fresh process, within the time limit.

Blocks that must not run are fenced as ```text or ```bash. Each block may import only torch, numpy, scipy and
gradlab (checked after it runs: no MLflow, DVC, Lightning, gymnasium, Ray or pandas got imported).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs" / "studies").glob("*.md"))
TIMEOUT_S = 60  # the convention is < 20 s on an idle CPU; the shared machine here runs several times slower
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
HEAVY = ("mlflow", "dvc", "pytorch_lightning", "lightning", "gymnasium", "ray", "pandas")
EPILOGUE = f"""
import sys as _sys
_heavy = [m for m in {HEAVY!r} if m in _sys.modules]
assert not _heavy, f"the block imported {{_heavy}}: docs blocks use torch/numpy/scipy/gradlab only"
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(1-based block number, source) of each ```python block, in order."""
    return [(k, m.group(1)) for k, m in enumerate(FENCE.finditer(path.read_text()), start=1)]


BLOCKS = [(path, k, code) for path in DOCS for k, code in python_blocks(path)]


def test_every_study_page_has_a_from_your_code_section_with_code():
    assert DOCS, "no docs/studies/*.md"
    for path in DOCS:
        text = path.read_text()
        assert "\n## From your code\n" in text, f"{path.relative_to(ROOT)}: no '## From your code' section"
        section = text.split("\n## From your code\n", 1)[1].split("\n## ", 1)[0]
        assert "```python" in section, f"{path.relative_to(ROOT)}: 'From your code' has no ```python block"


@pytest.mark.parametrize("path,number,code", BLOCKS, ids=[f"{p.stem}-block{k}" for p, k, _ in BLOCKS] or None)
def test_python_block_runs_as_written(path, number, code, tmp_path):
    where = f"{path.relative_to(ROOT)} python block {number}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code + EPILOGUE],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # a block writes nothing into the checkout
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: still running after {TIMEOUT_S} s")
    assert done.returncode == 0, f"{where} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
