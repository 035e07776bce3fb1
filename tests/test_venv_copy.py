"""`make install` recreates a .venv that was copied or moved from another folder (tools/venv_is_here.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT

FILES = ("Makefile", "pyproject.toml", "constraints.txt", "tools/venv_is_here.py")


def _project(root: Path) -> Path:
    """A project folder with the real Makefile and check, and a small .venv installed the way pip installs:
    scripts whose shebang names the .venv's python, gradlab's editable .pth naming src/."""
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    bin_ = root / ".venv" / "bin"
    for script in ("gradlab", "pip"):
        (bin_ / script).write_text(f"#!{bin_ / 'python3'}\nimport sys\n")
        (bin_ / script).chmod(0o755)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = root / ".venv" / "lib" / version / "site-packages"
    assert purelib.is_dir(), sysconfig.get_paths()["purelib"]
    (purelib / "__editable__.gradlab-0.1.0.pth").write_text(f"{root / 'src'}\n")
    (root / ".venv" / ".installed").touch()
    return root


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "tools/venv_is_here.py", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_moved_venv_is_recognised_and_make_install_recreates_it(tmp_path):
    here = _project(tmp_path / "original")
    assert _check(here).returncode == 0, _check(here).stderr
    dry = subprocess.run(["make", "-n", "install"], cwd=here, capture_output=True, text=True)
    assert dry.returncode == 0 and "rm -rf" not in dry.stdout and "pip install" not in dry.stdout, dry.stdout

    moved = tmp_path / "moved"
    here.rename(moved)
    out = _check(moved)
    assert out.returncode == 1
    assert f"bin/gradlab runs {here / '.venv' / 'bin' / 'python3'}" in out.stderr
    assert f"puts {here / 'src'} on sys.path" in out.stderr
    dry = subprocess.run(["make", "-n", "install"], cwd=moved, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any("made in another folder" in line and "rm -rf .venv" in line for line in lines), dry.stdout
    assert any("-m venv .venv" in line for line in lines) and any("pip install" in line for line in lines)
