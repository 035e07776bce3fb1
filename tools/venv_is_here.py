"""Exit 0 when the virtual environment running this script belongs to the project folder ROOT; else say why, exit 1.

Usage: ROOT/.venv/bin/python tools/venv_is_here.py ROOT    (what `make install` runs before trusting .venv)

A .venv copied or moved from another folder still runs the original: the shebangs of its scripts
(``gradlab``, ``pip``, ``dvc``...) name the old ``.venv/bin/python``, and the editable install of
gradlab (a ``__editable__*.pth`` file) puts the old ``src/`` on ``sys.path``. Its ``.installed``
stamp makes `make install` believe it is up to date; `make install` recreates it instead.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

SCRIPTS = ("gradlab", "pip", "dvc", "pytest")


def foreign(root: Path) -> list[str]:
    """Why the running environment is not ``root/.venv`` as installed there (empty when it is)."""
    venv_bin = (root / ".venv" / "bin").resolve()
    why = []
    for name in SCRIPTS:
        script = Path(sys.prefix) / "bin" / name
        if not script.is_file():
            continue
        with script.open("rb") as f:
            first = f.readline().decode(errors="replace").strip()
        if first.startswith("#!") and first[2:].split():
            interpreter = Path(first[2:].split()[0])
            if interpreter.parent.resolve() != venv_bin and interpreter.name.startswith("python"):
                why.append(f"bin/{name} runs {interpreter}")
    purelib = Path(sysconfig.get_paths()["purelib"])
    src = (root / "src").resolve()
    for pth in sorted(purelib.glob("__editable__*gradlab*.pth")):
        for line in pth.read_text().splitlines():
            if line.startswith("/") and Path(line).resolve() != src:
                why.append(f"{pth.name} puts {line} on sys.path")
    return why


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    why = foreign(Path(argv[0]).resolve())
    if why:
        print(f"{sys.prefix} was made in another folder: {'; '.join(why)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
