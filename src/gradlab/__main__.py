"""``python -m gradlab`` and the ``gradlab`` command: the pipeline's CLI (see ``gradlab --help``).

The command needs the pipeline extra (Typer, MLflow, Lightning, ...). After a library-only install
(``pip install gradlab``) it says so in one line, points to the library (``import gradlab``) and exits with
code 2 instead of a traceback. ``gradlab doctor SCRIPT [ARGS]`` (the NaN doctor) needs only torch and works in
either install.
"""

from __future__ import annotations

import sys

PIPELINE_HINT = "pip install 'gradlab[pipeline]' (or `make install` in a checkout)"
LIBRARY_HINT = (
    "the library needs no extra: `import gradlab` in Python (help(gradlab) lists the tools, docs/ explains them), "
    "and `python -m gradlab doctor SCRIPT [ARGS]` runs a training script under the NaN doctor"
)


def main(argv: list[str] | None = None) -> int:
    """Run the ``gradlab`` command line; exit code 2 with a hint when the pipeline extra is missing."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["doctor"]:  # light: torch only, with or without the pipeline extra
        from gradlab.doctor.script import main as doctor_main

        return doctor_main(args[1:])
    try:
        from gradlab.cli import main as cli_main
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] == "gradlab":
            raise
        print(
            f"error: the gradlab command needs the pipeline extra ({err.name} is not installed): {PIPELINE_HINT}; "
            f"{LIBRARY_HINT}",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
