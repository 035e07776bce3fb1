"""notebooks/*.ipynb are what tools/make_notebooks.py writes from their jupytext sources (each study folder's
notebook.md, tools/notebooks/00_overview.md): a source edited without regenerating fails here. Running them is
tests/test_pipeline_tiny.py's job."""

from __future__ import annotations

from conftest import ROOT, load_tool


def test_notebooks_are_built_from_their_sources():
    built = load_tool("make_notebooks").build()
    assert "00_overview.ipynb" in built and {"gd.ipynb", "pg.ipynb"} <= set(built)
    committed = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert committed == set(built), f"notebooks/ without a source, or a source not built: {committed ^ set(built)}"
    stale = [name for name, text in built.items() if (ROOT / "notebooks" / name).read_text() != text]
    assert not stale, f"notebooks/{stale[0]} differs from its source: run `python tools/make_notebooks.py`"


def test_a_shared_cell_stands_for_its_code_and_an_unknown_one_is_refused(tmp_path):
    tool = load_tool("make_notebooks")
    cells = tool.expand("code", "# gradlab: metrics gd", "gd", tmp_path)
    assert cells == [("code", tool.metrics_cell("gd"))]
    assert tool.expand("code", "# gradlab: setup\nx = 1", "gd", tmp_path)[0][1].endswith("x = 1")  # not alone: kept
    try:
        tool.expand("code", "# gradlab: bogus", "gd", tmp_path)
    except ValueError as err:
        assert "unknown cell" in str(err)
    else:
        raise AssertionError("an unknown shared cell was accepted")
