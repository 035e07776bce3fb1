"""The DVC plot templates of .dvc/plots/ filled by dvc-render (as `dvc plots show` / `dvc plots diff` fill them)
and drawn in headless Chromium: per-seed values as points, series numbers rounded, a revision legend only
when several revisions are drawn, diverged values off the log axis."""

from __future__ import annotations

import json

from conftest import ROOT, load_tool

TEMPLATES = ROOT / ".dvc" / "plots"


def _spec(template: str, rows: list[dict], x: str, y: str) -> dict:
    from dvc_render.vega import VegaRenderer

    renderer = VegaRenderer(
        [dict(r) for r in rows], "plot", template=template, template_dir=str(TEMPLATES), x=x, y=y, title="t"
    )
    return renderer.get_filled_template()


def _draw(tmp_path, specs: dict[str, dict]):
    """The offline page with one vega-embed per spec; returns the browser page (a context manager)."""
    divs = "".join(
        f'<div id="{name}"><script>vegaEmbed("#{name}", {json.dumps(spec)});</script></div>'
        for name, spec in specs.items()
    )
    page = (TEMPLATES / "offline.html").read_text().replace("{plot_divs}", divs).replace("{refresh_tag}", "")
    path = tmp_path / "page.html"
    path.write_text(page)
    return path


def _lr_rows(revs: list[str]) -> list[dict]:
    return [
        {"rev": rev, "lr": str(lr), "step": str(s), "loss": str((s + 1) * (k + 1))}
        for rev in revs
        for k, lr in enumerate([0.001379272012, 0.1])
        for s in range(4)
    ]


def test_templates_draw_points_rounded_legends_and_a_revision_legend_only_on_diffs(tmp_path):
    from browser import browser_page

    seeds = [{"rev": "workspace", "model": m, "seed": str(i), "val_nll": str(-i / 10)} for m in "ab" for i in range(5)]
    sweep = [
        {"rev": "workspace", "lr": str(lr), "final_loss": str(v)}
        for lr, v in [(0.1, 1e-4), (0.5, 9e-5), (1.1, 3e155), (1.5, "inf")]
    ]
    specs = {
        "show": _spec("lines_by_lr_logy", _lr_rows(["workspace"]), "step", "loss"),
        "diff": _spec("lines_by_lr_logy", _lr_rows(["workspace", "HEAD"]), "step", "loss"),
        "seeds": _spec("points", seeds, "model", "val_nll"),
        "seeds_diff": _spec("points", seeds + [dict(r, rev="HEAD") for r in seeds], "model", "val_nll"),
        "sweep": _spec("line_diverging_logxy", sweep, "lr", "final_loss"),
    }
    with browser_page(offline=True) as page:
        page.goto(_draw(tmp_path, specs).as_uri())
        page.wait_for_function("n => document.querySelectorAll('.vega-embed svg.marks').length >= n", arg=len(specs))
        assert not page.errors, page.errors

        def labels(name: str) -> list[str]:
            return [t for t in page.locator(f"#{name} g.role-legend-label text").all_text_contents() if t]

        assert labels("show") == ["0.001379", "0.1"]  # 4 significant digits, not 0.001379272012
        assert sorted(labels("diff")) == ["0.001379", "0.1", "revision HEAD", "revision workspace"]
        assert page.locator("#diff g.data_marks path").count() == 4  # a line per lr and revision
        # per-seed values: a point each at its model, no line across seed numbers
        assert page.locator("#seeds g.mark-symbol.data_marks path").count() == len(seeds)
        assert page.locator("#seeds g.mark-line.data_marks").count() == 0
        assert labels("seeds") == []
        assert [t.split(":")[0] for t in labels("seeds_diff")] == ["revision workspace", "revision HEAD"]
        # diverged values are rules, not points on an axis up to 1e+155
        ticks = page.locator("#sweep g.role-axis-label text").all_text_contents()
        assert not any("e+" in t for t in ticks), ticks
        assert page.locator("#sweep g.mark-rule.role-mark path, #sweep g.mark-rule.role-mark line").count() == 2


def test_the_templates_are_the_ones_dvc_yaml_names_and_those_are_committed():
    """tools/make_plot_templates.py writes the fixed templates and each by-field one a stage's plots name; the
    committed .dvc/plots/ holds exactly those, as the tool writes them (run it after editing dvc.yaml)."""
    tool = load_tool("make_plot_templates")
    named = tool.named_templates(ROOT / "dvc.yaml")
    specs = tool.templates(named)
    assert named <= set(specs)
    committed = {p.stem: json.loads(p.read_text()) for p in TEMPLATES.glob("*.json")}
    assert committed == specs


def test_a_template_name_of_no_known_form_is_refused():
    import pytest

    tool = load_tool("make_plot_templates")
    assert set(tool.templates({"lines_by_widget_logxy", "points_by_widget"})) >= {
        "lines_by_widget_logxy",
        "points_by_widget",
    }
    with pytest.raises(ValueError, match="'bars_by_widget'.*lines_by_<field>"):
        tool.templates({"bars_by_widget"})
