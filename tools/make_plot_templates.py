"""Write the DVC plot templates under .dvc/plots/ (Vega-Lite specs with DVC's anchors).

DVC's built-in templates draw a long-format CSV (several variants in one file) as one zig-zag
series and cannot draw a bar per category. These templates name the column that tells the series
apart, so each variant gets its own line:

- ``lines_by_<field>``: one line per value of ``<field>`` (mean over any other rows at the same x,
  e.g. seeds), ``_logx`` / ``_logy`` / ``_logxy`` with log axes for values that span decades;
- ``line`` (and its log variants): a file with a single series;
- ``points_by_<field>`` / ``points``: one point per row (a seed, a trial) at its category (DVC's x,
  e.g. the model or condition), coloured by ``<field>``: per-seed values are not a curve;
- ``line_diverging_logxy``: a sweep whose last values blow up (final loss against the step size):
  the line up to 10^4 x its smallest value, a red rule at each x beyond (or not finite), so that the
  axis stays on the values that did not diverge;
- ``bars_h``: horizontal bars, the category (DVC's x) on the vertical axis, the value (DVC's y) along it.

Numbers that name a series (a learning rate) are shown to 4 significant digits. ``dvc plots diff``
adds a ``rev`` field: every template draws each revision in its own dash (the workspace solid) or
shape and shows a "revision ..." legend, only when more than one revision is drawn.

Which templates exist follows from dvc.yaml: every ``lines_by_<field>[_logx|_logy|_logxy]`` and
``points_by_<field>[_logy]`` a stage's plots name is written (a new study's ``dvc.yaml`` block is all it takes,
nothing here to edit), beside the fixed ones (``line*``, ``points*``, ``bars_h``, ``line_diverging_logxy``).
A name of no known form is refused with the forms allowed.

Run ``python tools/make_plot_templates.py`` after editing this file or the templates dvc.yaml names.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".dvc" / "plots"
SCALES = {"": (False, False), "_logx": (True, False), "_logy": (False, True), "_logxy": (True, True)}
LINES_BY = re.compile(r"lines_by_(?P<field>\w+?)(?P<scale>_logx|_logy|_logxy)?")
POINTS_BY = re.compile(r"points_by_(?P<field>\w+?)(?P<scale>_logy)?")
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
X, Y = "<DVC_METRIC_X>", "<DVC_METRIC_Y>"
DASHES = [[1, 0], [6, 4], [2, 2], [8, 3, 2, 3]]  # workspace first (solid): revisions sorted descending
SHAPES = ["circle", "triangle", "square", "diamond"]
OPACITIES = [1.0, 0.45, 0.7, 0.3]
SHAPE_GLYPHS = ["\u25cf", "\u25b2", "\u25a0", "\u25c6"]  # the SHAPES
OPACITY_NAMES = ["opaque", "faded", "lighter", "faintest"]  # the OPACITIES
DIVERGED = 1e4  # line_diverging: values above this many times the smallest are drawn as diverged


def axis(field: str, title: str, log: bool, **extra) -> dict:
    spec = {"field": field, "type": "quantitative", "title": title, "scale": {"zero": False}, **extra}
    if log:
        spec["scale"] = {"type": "log"}
    return spec


def numbers(field: str, x_numeric: bool = True) -> list[dict]:
    """The CSV's text cells as numbers (x stays text when it names a category), and a series label: numbers to
    4 significant digits, names as they are."""
    return [
        {"calculate": f"toNumber(datum['{X}'])" if x_numeric else f"toString(datum['{X}'])", "as": X},
        {"calculate": f"toNumber(datum['{Y}'])", "as": Y},
        {
            "calculate": f"isValid(datum['{field}']) && datum['{field}'] !== '' && isFinite(toNumber(datum['{field}']))"
            f" ? format(toNumber(datum['{field}']), '.4~g') : toString(datum['{field}'])",
            "as": field,
        },
    ]


def by_revision(values: list) -> dict:
    """The encoding that tells revisions apart, no legend (the legend layer below has it)."""
    return {"field": "rev", "type": "nominal", "sort": "descending", "scale": {"range": values}, "legend": None}


def revision_legend(glyphs: list[str] | None = None) -> dict:
    """An invisible layer whose only job is the revision legend (a dashed line per revision). With one revision
    its only entry is an empty label without a symbol (a legend without entries would break Vega's layout), so
    `dvc plots show` draws no "revision workspace" legend; `dvc plots diff` draws one entry per revision. Points
    and bars tell revisions apart by shape or opacity: ``glyphs`` names them in the label, no symbol drawn."""
    shown = {"signal": "datum.value === '' ? 0 : 1"} if glyphs is None else {"value": 0}
    label = "'revision ' + datum.label"
    if glyphs:
        label += f" + ': ' + {json.dumps(glyphs)}[datum.index % {len(glyphs)}]"
    return {
        "transform": [
            {"joinaggregate": [{"op": "distinct", "field": "rev", "as": "revisions"}]},
            {"calculate": "datum.revisions > 1 ? datum.rev : ''", "as": "revision"},
        ],
        "mark": {"type": "line", "opacity": 0, "clip": True},
        "encoding": {
            "x": {"value": -100},  # off the plot, and no share in the axes' domains
            "y": {"value": -100},
            "strokeDash": {
                "field": "revision",
                "type": "nominal",
                "sort": "descending",  # as the data layers: the workspace first
                "scale": {"range": DASHES},
                "legend": {
                    "title": None,
                    "labelExpr": f"datum.label === '' ? '' : {label}",
                    "symbolStrokeColor": "grey",
                    "symbolFillColor": "transparent",
                    "encode": {"symbols": {"update": {"opacity": shown, "fillOpacity": shown, "strokeOpacity": shown}}},
                },
            },
        },
    }


def page(spec: dict, layers: list[dict], independent: str) -> dict:
    return {
        "$schema": SCHEMA,
        "usermeta": {"embedOptions": {"renderer": "svg"}},  # legends and marks readable in the page's DOM
        "data": {"values": "<DVC_METRIC_DATA>"},
        "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "middle"},
        "width": 420,
        "height": 260,
        **spec,
        "layer": layers,
        "resolve": {"scale": {independent: "independent"}},
    }


def lines(series: str | None, logx: bool, logy: bool) -> dict:
    field = series or "rev"
    x = axis(X, "<DVC_METRIC_X_LABEL>", logx)
    y = axis(Y, "<DVC_METRIC_Y_LABEL>", logy, aggregate="mean")
    encoding = {"x": x, "y": y, "strokeDash": by_revision(DASHES)}
    if series is not None:
        encoding["color"] = {"field": series, "type": "nominal", "title": series}
    main = {"name": "data", "mark": {"type": "line", "point": False, "tooltip": True}, "encoding": encoding}
    spec = {
        "transform": [
            *numbers(field),
            {"filter": f"isFinite(datum['{Y}'])" + (f" && datum['{Y}'] > 0" if logy else "")},
        ]
    }
    return page(spec, [main, revision_legend()], "strokeDash")


def line_diverging(logx: bool, logy: bool) -> dict:
    """A sweep that diverges: the line over the values below DIVERGED x the smallest, a red rule at each x above."""
    x = axis(X, "<DVC_METRIC_X_LABEL>", logx)
    y = axis(Y, "<DVC_METRIC_Y_LABEL> (red rules: diverged)", logy)
    kept = f"isFinite(datum['{Y}']) && datum['{Y}'] <= {DIVERGED:g} * datum.smallest" + (
        f" && datum['{Y}'] > 0" if logy else ""
    )
    main = {
        "name": "data",
        "transform": [{"filter": kept}],
        "mark": {"type": "line", "point": True, "tooltip": True},
        "encoding": {"x": x, "y": y, "strokeDash": by_revision(DASHES)},
    }
    diverged = {
        "transform": [{"filter": f"!({kept})"}],
        "mark": {"type": "rule", "color": "#D55E00", "opacity": 0.6, "tooltip": True},
        "encoding": {
            "x": x,
            "tooltip": [{"field": X, "type": "quantitative"}, {"field": Y, "type": "nominal", "title": "value"}],
            "strokeDash": by_revision(DASHES),
        },
    }
    spec = {
        "transform": [
            *numbers("rev"),
            {"calculate": f"isFinite(datum['{Y}']) && datum['{Y}'] > 0 ? datum['{Y}'] : null", "as": "finite"},
            {"joinaggregate": [{"op": "min", "field": "finite", "as": "smallest"}], "groupby": ["rev"]},
        ]
    }
    return page(spec, [main, diverged, revision_legend()], "strokeDash")


def points(series: str | None, logy: bool) -> dict:
    """One point per row at its category: per-seed or per-trial values grouped by condition."""
    field = series or "rev"
    x = {"field": X, "type": "nominal", "title": "<DVC_METRIC_X_LABEL>", "sort": None, "axis": {"labelAngle": -30}}
    y = axis(Y, "<DVC_METRIC_Y_LABEL>", logy)
    encoding = {
        "x": x,
        "y": y,
        "shape": by_revision(SHAPES),
    }
    if series is not None:
        encoding["color"] = {"field": series, "type": "nominal", "title": series}
        encoding["xOffset"] = {"field": series, "type": "nominal", "sort": None}  # side by side in a category
    mark = {"type": "point", "filled": True, "size": 50, "opacity": 0.7, "tooltip": {"content": "data"}}
    main = {"name": "data", "mark": mark, "encoding": encoding}  # the tooltip names the row (its trial, its seed)
    spec = {
        "transform": [
            *numbers(field, x_numeric=False),
            {"filter": f"isFinite(datum['{Y}'])" + (f" && datum['{Y}'] > 0" if logy else "")},
        ]
    }
    return page(spec, [main, revision_legend(SHAPE_GLYPHS)], "strokeDash")


def bars_h() -> dict:
    y = {"field": X, "type": "nominal", "title": "<DVC_METRIC_X_LABEL>", "sort": None}
    x = {"field": Y, "type": "quantitative", "title": "<DVC_METRIC_Y_LABEL>"}
    main = {
        "name": "data",
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": y,
            "x": x,
            "yOffset": {"field": "rev", "type": "nominal", "sort": "descending"},
            "color": {"field": X, "type": "nominal", "legend": None},
            "opacity": by_revision(OPACITIES),
        },
    }
    legend = revision_legend(OPACITY_NAMES)
    spec = {"transform": [{"calculate": f"toNumber(datum['{Y}'])", "as": Y}]}  # the category stays text
    return {**page(spec, [main, legend], "strokeDash"), "height": {"step": 20}}


def named_templates(dvc_yaml: Path) -> set[str]:
    """The ``template:`` of every plot of every stage in ``dvc_yaml`` (and of its top-level ``plots:``)."""
    dvc = yaml.safe_load(dvc_yaml.read_text()) or {}
    entries = [e for stage in (dvc.get("stages") or {}).values() for e in stage.get("plots") or []]
    entries += dvc.get("plots") or []
    return {
        props["template"]
        for entry in entries
        if isinstance(entry, dict)
        for props in entry.values()
        if isinstance(props, dict) and "template" in props
    }


def templates(names: set[str]) -> dict[str, dict]:
    """The fixed templates and every by-field template in ``names``; ValueError for a name of no known form."""
    specs = {"bars_h": bars_h(), "points": points(None, False), "points_logy": points(None, True)}
    specs["line_diverging_logxy"] = line_diverging(True, True)
    for suffix, (logx, logy) in SCALES.items():
        specs[f"line{suffix}"] = lines(None, logx, logy)
    for name in sorted(names - set(specs)):
        if m := LINES_BY.fullmatch(name):
            logx, logy = SCALES[m["scale"] or ""]
            specs[name] = lines(m["field"], logx, logy)
        elif m := POINTS_BY.fullmatch(name):
            specs[name] = points(m["field"], bool(m["scale"]))
        else:
            raise ValueError(
                f"dvc.yaml names the plot template {name!r}; allowed: {', '.join(sorted(specs))}, "
                "lines_by_<field>[_logx|_logy|_logxy], points_by_<field>[_logy]"
            )
    return specs


def main() -> int:
    try:
        specs = templates(named_templates(ROOT / "dvc.yaml"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, spec in specs.items():
        (OUT / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"{len(specs)} templates in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
