"""``python -m gradlab`` and the ``gradlab`` command: the pipeline's CLI (see ``gradlab --help``).

The command needs the pipeline extra (Typer, MLflow, Lightning, ...). After a library-only install
(``pip install gradlab``) it says so in one line and exits with code 2 instead of a traceback.
"""

from __future__ import annotations

import sys

PIPELINE_HINT = "pip install 'gradlab[pipeline]' (or `make install` in a checkout)"


def main(argv: list[str] | None = None) -> int:
    """Run the ``gradlab`` command line; exit code 2 with a hint when the pipeline extra is missing."""
    try:
        from gradlab.cli import main as cli_main
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] == "gradlab":
            raise
        print(
            f"error: the gradlab command needs the pipeline extra ({err.name} is not installed): {PIPELINE_HINT}",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
