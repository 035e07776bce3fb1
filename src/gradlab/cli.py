"""The ``gradlab`` command."""

from __future__ import annotations

import subprocess
import sys

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="gradlab: experiment-tracked answers to five questions about gradients and losses.",
)


@app.command()
def run(
    stage: str = typer.Argument(..., help="Stage to run (see `gradlab stages`)."),
    set_: list[str] = typer.Option([], "--set", help="Override a parameter: key.path=value (repeatable)."),
    params: str = typer.Option("params.yaml", "--params", help="Parameter file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the stage's last checkpoint."),
) -> None:
    """Run one stage, exactly as `dvc repro` runs it (results/STAGE, one MLflow parent run)."""
    from gradlab.runner import guarded, run_stage

    raise typer.Exit(guarded(run_stage, stage, set_, params, resume))


@app.command()
def stages() -> None:
    """List the stages and the question each one answers."""
    from gradlab.stages import all_stages

    for stage in all_stages().values():
        typer.echo(f"{stage.name:14s} {stage.question}")


def ui_command(host: str, port: int, uri: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback unless you say otherwise)."),
    port: int = typer.Option(5000, help="Port to listen on."),
) -> None:
    """Start the MLflow UI on the project's tracking store."""
    from gradlab.tracking import tracking_uri

    uri = tracking_uri()
    typer.echo(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C to stop)")
    try:
        raise typer.Exit(subprocess.call(ui_command(host, port, uri)))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
