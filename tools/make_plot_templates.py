"""Write the DVC plot templates under .dvc/plots/ (Vega-Lite specs with DVC's anchors).

DVC's built-in templates draw a long-format CSV (several variants in one file) as one zig-zag
series and cannot draw a bar per category. These templates name the column that tells the series
apart, so each variant gets its own line:

- ``lines_by_<field>``: one line per value of ``<field>`` (mean over any other rows at the same x,
  e.g. seeds), ``_logx`` / ``_logy`` / ``_logxy`` with log axes for values that span decades;
- ``line`` (and its log variants): a file with a single series;
- ``bars_h``: horizontal bars, the category (DVC's x) on the vertical axis, the value (DVC's y) along it.

Run ``python tools/make_plot_templates.py`` after editing; dvc.yaml names the templates.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / ".dvc" / "plots"
SERIES = ["variant", "rule", "method", "lr", "task", "model", "condition", "formulation", "factor", "config", "problem"]


def axis(field: str, title: str, log: bool, **extra) -> dict:
    spec = {"field": field, "type": "quantitative", "title": title, "scale": {"zero": False}, **extra}
    if log:
        spec["scale"] = {"type": "log"}
    return spec


def lines(series: str | None, logx: bool, logy: bool) -> dict:
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "usermeta": {"embedOptions": {"renderer": "svg"}},  # legends and marks readable in the page's DOM
        "data": {"values": "<DVC_METRIC_DATA>"},
        "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "middle"},
        "width": 420,
        "height": 260,
        "transform": [
            {"calculate": f"toString(datum['{series or 'rev'}'])", "as": series or "rev"},
            {"calculate": "toNumber(datum['<DVC_METRIC_X>'])", "as": "<DVC_METRIC_X>"},  # CSV cells are text
            {"calculate": "toNumber(datum['<DVC_METRIC_Y>'])", "as": "<DVC_METRIC_Y>"},
            {"filter": "isFinite(datum['<DVC_METRIC_Y>'])" + (" && datum['<DVC_METRIC_Y>'] > 0" if logy else "")},
        ],
        "mark": {"type": "line", "point": False, "tooltip": True},
        "encoding": {
            "x": axis("<DVC_METRIC_X>", "<DVC_METRIC_X_LABEL>", logx),
            "y": axis("<DVC_METRIC_Y>", "<DVC_METRIC_Y_LABEL>", logy, aggregate="mean"),
            "color": {"field": series, "type": "nominal", "title": series},
            "strokeDash": {"field": "rev", "type": "nominal", "legend": None},  # `dvc plots diff`: dashed per revision
        },
    }
    if series is None:  # one series per revision
        spec["encoding"]["color"] = {"field": "rev", "type": "nominal", "title": "revision"}
        del spec["encoding"]["strokeDash"]
    return spec


def bars_h() -> dict:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "usermeta": {"embedOptions": {"renderer": "svg"}},  # legends and marks readable in the page's DOM
        "data": {"values": "<DVC_METRIC_DATA>"},
        "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "middle"},
        "width": 420,
        "transform": [{"calculate": "toNumber(datum['<DVC_METRIC_Y>'])", "as": "<DVC_METRIC_Y>"}],
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "<DVC_METRIC_X>", "type": "nominal", "title": "<DVC_METRIC_X_LABEL>", "sort": None},
            "x": {"field": "<DVC_METRIC_Y>", "type": "quantitative", "title": "<DVC_METRIC_Y_LABEL>"},
            "yOffset": {"field": "rev", "type": "nominal"},
            "color": {"field": "<DVC_METRIC_X>", "type": "nominal", "legend": None},
        },
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    specs = {"bars_h": bars_h()}
    scales = {"": (False, False), "_logx": (True, False), "_logy": (False, True), "_logxy": (True, True)}
    for suffix, (logx, logy) in scales.items():
        specs[f"line{suffix}"] = lines(None, logx, logy)
        for series in SERIES:
            specs[f"lines_by_{series}{suffix}"] = lines(series, logx, logy)
    for name, spec in specs.items():
        (OUT / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"{len(specs)} templates in {OUT}")


if __name__ == "__main__":
    main()
