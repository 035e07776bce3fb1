"""The findings report: reports/REPORT.md and reports/report.html, every number quoted from results/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gradlab.report.build import build


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
        folder, quotes = build(results, reports, Path(params_file))
        run.log_metrics({"report/quoted_numbers": len(quotes)})
        run.log_artifacts(folder)
    print(f"report: {folder / 'REPORT.md'} and {folder / 'report.html'}", file=sys.stderr)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    from gradlab.process import guarded

    parser = argparse.ArgumentParser(prog="pipelines/report.py", description="Build the findings report.")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    return guarded(run_report, args.params)
