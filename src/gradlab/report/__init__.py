"""The findings report: reports/REPORT.md and reports/report.html, every number quoted from results/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gradlab.report.build import build


def built_from(uri: str | None) -> dict[str, str]:
    """Tags naming, per stage, the MLflow run whose results the report read (the latest finished stage run)."""
    from gradlab.browse import latest_stage_run
    from gradlab.report.sections import sections

    found = {stage: latest_stage_run(stage, uri) for stage in sections()}
    return {f"gradlab.report.{stage}_run": run.info.run_id for stage, run in found.items() if run is not None}


def run_report(params_file: str | Path = "params.yaml", reports: Path | None = None, settings=None) -> int:
    """Rebuild the report from existing results and log it on a ``gradlab/report`` run. Returns an exit code.

    Results are read from ``settings.results`` and the report written to ``reports`` (default
    ``settings.reports``); ``settings`` default to the environment's, read once here.
    """
    from gradlab.config import ConfigError
    from gradlab.process import ExitCode, refuse
    from gradlab.settings import Settings
    from gradlab.tracking import TrackingError, open_tracker, standard_tags

    try:
        settings = settings or Settings.from_env()
        results, reports = settings.results, Path(reports or settings.reports)
        tracker = open_tracker("gradlab/report", settings.tracking_uri)
    except ConfigError as err:
        return refuse(err, ExitCode.BAD_INPUT)
    except TrackingError as err:
        return refuse(err, ExitCode.FAILED)
    with tracker.run("gradlab/report", "report", tags=standard_tags("report", {})) as run:
        docs = results.parent / "docs" / "studies"  # a checkout's study pages (absent beside a temporary results/)
        folder, quotes = build(results, reports, Path(params_file), docs)
        run.log_metrics({"report/quoted_numbers": len(quotes)})
        for name in ("REPORT.md", "report.html", "quotes.json"):
            run.log_artifact(folder / name)
        run.set_tags(built_from(settings.tracking_uri))
    print(f"report: {folder / 'REPORT.md'} and {folder / 'report.html'}", file=sys.stderr)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    from gradlab.process import guarded

    parser = argparse.ArgumentParser(prog="pipelines/report.py", description="Build the findings report.")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    return guarded(run_report, args.params)
