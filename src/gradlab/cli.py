"""The ``gradlab`` command."""

from __future__ import annotations

import sys

import typer

from gradlab.numerics import pin_environment
from gradlab.process import ExitCode, entry_point_signals, interrupt_exit_code

pin_environment()  # before anything imports NumPy or computes with torch (gradlab.numerics)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="gradlab: experiment-tracked answers to five questions about gradients and losses.",
)


# `gradlab run STAGE --quick`: the stage's small parameters (the ones its end-to-end tests use), seconds not minutes:
# the `STAGE:` section of its study's tiny.yaml (gradlab.stages.quick_params_file)
QUICK_RESULTS = "quick"  # results/quick/<stage>: never the stage's own results/<stage>


@app.command()
def run(
    stage: str = typer.Argument(..., help="Stage to run (see `gradlab stages`)."),
    set_: list[str] = typer.Option([], "--set", help="Override a parameter: key.path=value (repeatable)."),
    params: str = typer.Option("params.yaml", "--params", help="Parameter file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the stage's last checkpoint."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Small parameters (its study's tiny.yaml; under a minute) into results/quick/STAGE, "
        "leaving results/STAGE alone. --set still applies.",
    ),
) -> None:
    """Run one stage, exactly as `dvc repro` runs it (results/STAGE, one MLflow parent run)."""
    from gradlab.process import guarded, refuse
    from gradlab.runner import run_stage

    if not quick:
        raise typer.Exit(guarded(run_stage, stage, set_, params, resume))

    from gradlab.settings import Settings
    from gradlab.stages import all_stages, quick_params_file, quick_stages
    from gradlab.tracking import QUICK_TAG, stage_run_name

    if params != "params.yaml":
        raise typer.Exit(refuse("--quick: uses the study's tiny.yaml; leave out --params", ExitCode.BAD_INPUT))
    known = all_stages()
    if stage not in known:  # the usual one-line refusal naming the stages
        raise typer.Exit(guarded(run_stage, stage, set_, params, resume))
    quick_file = quick_params_file(stage)
    if quick_file is None:
        message = f"--quick: stage {stage!r} has no quick parameters; allowed: {', '.join(quick_stages())}"
        raise typer.Exit(refuse(message, ExitCode.BAD_INPUT))
    settings = Settings.from_env()
    code = guarded(
        run_stage,
        stage,
        set_,
        quick_file,
        resume,
        out_dir=settings.results / QUICK_RESULTS / stage,
        run_name=f"{stage_run_name(stage)} · quick",
        tags={QUICK_TAG: "true", "gradlab.params_file": str(quick_file)},
        settings=settings,
    )
    raise typer.Exit(code)


@app.command()
def sweep(
    stage: str = typer.Argument(None, help="Stage to sweep (see `gradlab stages`); omit with --resume."),
    grid: list[str] = typer.Option([], "--grid", help="key.path=v1,v2,... (repeatable; trials = product x seeds)."),
    set_: list[str] = typer.Option([], "--set", help="Fixed override for every trial: key.path=value (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per grid point: the stage's seed, seed+1, ..."),
    workers: int = typer.Option(None, "--workers", help="Trials at once (default: the number of cores)."),
    backend: str = typer.Option("local", "--backend", help="local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join: auto or ray://HOST:10001."),
    metric: str = typer.Option(None, "--metric", help="Dotted key of metrics.json to tabulate, e.g. mlp.best_lr."),
    params: str = typer.Option("params.yaml", "--params", help="Parameter file."),
    resume: str = typer.Option(None, "--resume", help="SWEEP_ID to continue: FINISHED trials are skipped."),
) -> None:
    """Run a grid x seeds of trials of one stage in parallel (results/sweeps/<id>, one MLflow parent run)."""
    from gradlab.sweep import sweep as run_sweep

    raise typer.Exit(run_sweep(stage, grid, set_, seeds, workers, backend, address, metric, params, resume))


@app.command()
def tune(
    space: str = typer.Argument(..., help="Search-space file (YAML; docs/tune.md)."),
    trials: int = typer.Option(None, "--trials", help="Trial budget (default: the file's trials)."),
    workers: int = typer.Option(None, "--workers", help="Trials at once (default: the number of cores)."),
    backend: str = typer.Option("local", "--backend", help="local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join: auto or ray://HOST:10001."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (default: results/tune/NAME/study.db)."),
    objective: str = typer.Option(None, "--objective", help="Dotted metrics key to optimise (overrides the file)."),
    direction: str = typer.Option(None, "--direction", help="minimize or maximize (overrides the file)."),
    name: str = typer.Option(None, "--name", help="Study name (default: the file's name, else the stage)."),
    params: str = typer.Option("params.yaml", "--params", help="Parameter file (a new study's base values)."),
) -> None:
    """Search a stage's parameters with Optuna and pruning (results/tune/NAME, one MLflow parent run); rerun to
    continue an interrupted study."""
    from gradlab.tune.command import tune as run_tune

    raise typer.Exit(run_tune(space, trials, workers, backend, address, storage, params, objective, direction, name))


@app.command()
def replicate(
    stage: str = typer.Argument(..., help="Stage to replicate (see `gradlab stages`)."),
    offset: int = typer.Option(1000, "--offset", help="The independent seed block starts at the stage's seed + this."),
    params: str = typer.Option("params.yaml", "--params", help="Parameter file."),
) -> None:
    """Rerun a stage on an independent block of seeds; results/STAGE/replication.json says which verdicts held."""
    from gradlab.process import guarded
    from gradlab.replicate import run_replicate

    raise typer.Exit(guarded(run_replicate, stage, params, offset))


@app.command()
def stages() -> None:
    """List the stages and the question each one answers."""
    from gradlab.stages import all_stages

    for stage in all_stages().values():
        typer.echo(f"{stage.name:14s} {stage.question}")


@app.command()
def metrics(
    stage: list[str] = typer.Argument(None, help="Stages to show (default: every stage with results)."),
    diff: str = typer.Option(None, "--diff", help="Only the keys whose value differs from git revision REV."),
) -> None:
    """The stages' headline numbers (results/STAGE/metrics.json), one row per key with its interval."""
    from gradlab.metrics_table import diff as diff_table
    from gradlab.metrics_table import show
    from gradlab.process import ExitCode, refuse
    from gradlab.settings import current
    from gradlab.stages import all_stages

    results, known = current().results, list(all_stages())
    unknown = [s for s in stage or [] if s not in known]
    if unknown:
        raise typer.Exit(
            refuse(f"stage: {unknown[0]!r} is not a stage; allowed: {', '.join(known)}", ExitCode.BAD_INPUT)
        )
    chosen = stage or [s for s in known if (results / s / "metrics.json").exists()]
    try:
        typer.echo(diff_table(results, chosen, diff) if diff else show(results, chosen))
    except ValueError as exc:
        raise typer.Exit(refuse(exc, ExitCode.BAD_INPUT)) from None


@app.command()
def report(params: str = typer.Option("params.yaml", "--params", help="Parameter file (for the conditions).")) -> None:
    """Rebuild reports/REPORT.md and reports/report.html from existing results."""
    from gradlab.process import guarded
    from gradlab.report import run_report

    raise typer.Exit(guarded(run_report, params))


def ui_command(host: str, port: int, uri: str) -> list[str]:
    from gradlab.ui import server_command

    return server_command(host, port, uri)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback unless you say otherwise)."),
    port: int = typer.Option(5000, help="Port to listen on."),
) -> None:
    """Start the MLflow UI on the project's tracking store; once it answers, print a link to each stage's runs
    table. Ctrl-C or SIGTERM stops the whole server (exit 130 / 143)."""
    from gradlab.browse import experiment_links, relocate
    from gradlab.tracking import tracking_uri
    from gradlab.ui import serve

    uri = tracking_uri()
    moved = relocate(uri)  # a copied or moved project: its artifacts are here, not where the store says
    if moved:
        typer.echo(f"artifact locations of {moved} experiments pointed at another folder; now at the store's")
    raise typer.Exit(serve(host, port, uri, lambda base: experiment_links(uri, base), typer.echo))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def doctor(ctx: typer.Context) -> None:
    """Run a training script under the NaN doctor: `gradlab doctor [--json PATH] [--seed N] SCRIPT [ARGS...]`
    names the first non-finite value's step, op, module, your line, cause and fix (exit 1 when it finds one)."""
    from gradlab.doctor.script import main as doctor_main

    raise typer.Exit(doctor_main(list(ctx.args)))


def main(argv: list[str] | None = None) -> int:
    """Entry point: a usage error is one line and exit code 2, like any other bad input."""
    try:  # typer >= 0.20 vendors click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover
        from click.exceptions import NoArgsIsHelpError, UsageError

    command = typer.main.get_command(app)
    try:
        with entry_point_signals():  # our own SIGINT/SIGTERM handlers, even if started with SIGINT ignored
            result = command.main(args=argv, prog_name="gradlab", standalone_mode=False)
    except NoArgsIsHelpError as err:
        print(err.format_message() if hasattr(err, "format_message") else str(err), file=sys.stderr)
        return ExitCode.BAD_INPUT
    except UsageError as err:
        print(f"error: {err.format_message()} (see `gradlab --help`)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except typer.Exit as exit_:
        return exit_.exit_code
    except KeyboardInterrupt as exc:
        return interrupt_exit_code(exc)
    return result if isinstance(result, int) else ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
