"""Two installs: the library (torch, numpy, scipy) and the pipeline extra at the exact versions of constraints.txt.

The slow test installs the project folder, no extras, into a fresh virtual environment and runs the public
API there on user models. torch comes first, as a user's own torch would: the very build this test runs on,
installed distribution by distribution (torch and what it requires, each with its dist-info and RECORD) by
hard links to this environment's files, which pip then sees installed; unpacking the ~1 GB wheel again took
most of the test's time. A bare ``pip install <folder>`` here would resolve ``torch>=2.13,<3`` to the newest
torch the indexes offer, a CUDA build with ~3 GB of nvidia-* wheels (see README, "Install").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import venv
from importlib import metadata
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_ONLY = ["mlflow", "dvc", "ray", "gymnasium", "pytorch-lightning", "lightning", "pandas", "typer", "ale-py"]
LIBRARY = {"torch", "numpy", "scipy"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_the_library_needs_only_torch_numpy_scipy_with_ranges():
    deps = _pyproject()["project"]["dependencies"]
    assert {_name(d) for d in deps} == LIBRARY
    for d in deps:
        assert "==" not in d and ">=" in d and "<" in d, f"{d}: a range with a lower and an upper bound"


def test_the_readme_counts_and_names_the_public_api_as_it_is():
    import gradlab

    readme = (ROOT / "README.md").read_text()
    sentence = r"`gradlab.__all__` has (\d+) names \(`help\(gradlab\)` describes them; among them ([^)]*)\)"
    said = re.search(sentence, readme)
    assert said, "README: the sentence that counts gradlab.__all__"
    assert int(said.group(1)) == len(gradlab.__all__)
    named = re.findall(r"`(\w+)`", said.group(2))
    assert named and set(named) <= set(gradlab.__all__), set(named) - set(gradlab.__all__)
    for name in gradlab.__all__:  # every name loads and help(gradlab) mentions it
        assert getattr(gradlab, name) is not None and name in (gradlab.__doc__ or ""), name


def test_the_pipeline_extra_is_pinned_exactly_by_constraints_and_matches_this_environment():
    extras = _pyproject()["project"]["optional-dependencies"]
    pins = _constraints()
    names = {_name(r) for r in extras["pipeline"] + extras["dev"]} | LIBRARY
    assert {"mlflow", "dvc", "ray", "gymnasium", "pytorch-lightning"} <= names
    missing = sorted(n for n in names if n not in pins)
    assert not missing, f"not pinned in constraints.txt: {missing}"
    for n in names:  # make install reproduces the environment the pipeline runs in
        installed = metadata.version(n).split("+")[0]
        assert pins[n] == installed, f"{n}: constraints.txt pins {pins[n]}, installed {installed}"
    makefile = (ROOT / "Makefile").read_text()
    assert "uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[pipeline,dev]'" in makefile
    assert "pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[pipeline,dev]'" in makefile


def _copy_project(dest: Path) -> Path:
    """What a user gets: pyproject.toml, README.md and src/ (a copy, so the build leaves the checkout alone)."""
    dest.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


USER_CODE = r"""
import sys
import gradlab
assert "torch" not in sys.modules, "import gradlab alone imports torch"
import numpy
import torch

# the asker of input_grad: a model of their own, with BatchNorm in training mode, images
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                          torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 1)).double().train()
X = torch.randn(10, 1, 8, 8, dtype=torch.float64)
G, out = gradlab.per_sample_input_grad_and_outputs(net, X)
Xr = X.clone().requires_grad_(True)
o = net(Xr).reshape(-1)
ref = torch.stack([torch.autograd.grad(o[i], Xr, retain_graph=True)[0][i] for i in range(10)])
assert G.shape == X.shape and float((G - ref).abs().max()) <= 1e-10
assert gradlab.couples_samples(net)
try:
    gradlab.per_sample_input_grad(net, X, "sum")
    raise AssertionError("sum on a coupling model was accepted")
except ValueError as err:
    assert "BatchNorm2d" in str(err)

# mdn: a mixture head's outputs
logits, mu, raw = torch.randn(3, 16, 4).unbind(0)
nll = gradlab.nll(logits, mu, gradlab.sigma_from(raw, "softplus"), torch.randn(16))
assert nll.shape == (16,) and bool(torch.isfinite(nll).all())

# spearman: two score vectors
a = torch.randn(20, requires_grad=True)
rho = gradlab.soft_spearman(a, torch.randn(20), 1.0)
rho.backward()
assert -1 <= float(rho) <= 1 and a.grad is not None

# pg: a REINFORCE loss from log-probabilities of one's own policy
logp = torch.log_softmax(torch.randn(7, 3, requires_grad=True), -1)[torch.arange(7), torch.randint(0, 3, (7,))]
adv = gradlab.standardize(gradlab.discounted_returns(numpy.array([0, 0, 0, 0, 0, 0, 1.0]), 0.99))
loss = gradlab.policy_loss("correct", logp, torch.as_tensor(adv))
assert loss.dim() == 0

heavy = [m for m in ("mlflow", "dvc", "ray", "gymnasium", "pytorch_lightning", "lightning", "pandas")
         if m in sys.modules]
assert not heavy, heavy
print("public API OK", torch.__version__)
"""


def _requirement_closure(name: str) -> list[metadata.Distribution]:
    """``name``'s distribution and every one it requires (no extras, markers of this interpreter)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = _name(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _install_by_links(dists: list[metadata.Distribution], site: Path) -> None:
    """The files of these installed distributions (their RECORD: packages and dist-info) into ``site``, as hard
    links where the file system allows, copies elsewhere; console scripts outside site-packages are left out."""
    for dist in dists:
        for rel in dist.files or []:
            if rel.parts[0] == "..":
                continue
            src, dest = Path(dist.locate_file(rel)), site / rel
            if not src.is_file():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)


@pytest.mark.slow
def test_pip_install_of_the_folder_installs_the_library_alone_and_the_api_works(tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    py = str(env / "bin" / "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]

    def run(cmd, **kw):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    there = {_name(p["name"]): p["version"] for p in json.loads(run([py, "-m", "pip", "list", "--format=json"]).stdout)}
    torch_and_its_requirements = []
    for dist in _requirement_closure("torch"):
        name = _name(dist.metadata["Name"])
        if there.get(name) == dist.version:
            continue
        if name in there:  # the venv's own setuptools is older than torch requires: replaced, as pip would
            run([*pip[:-2], "uninstall", "--yes", "--quiet", name])
        torch_and_its_requirements.append(dist)
    _install_by_links(torch_and_its_requirements, site)  # the user's own torch: this very build
    assert run([*pip[:-2], "check"]).returncode == 0  # complete: everything torch requires is there
    project = _copy_project(tmp_path / "gradlab")
    report = tmp_path / "report.json"
    run([*pip, "--report", str(report), str(project)])  # the library: no extras
    installed = {
        i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    assert "gradlab" in installed and "torch" not in installed, installed  # torch kept as it was
    listing = json.loads(run([py, "-m", "pip", "list", "--format=json"]).stdout)
    have = {p["name"].lower().replace("_", "-"): p["version"] for p in listing}
    assert not [n for n in PIPELINE_ONLY if n in have], sorted(have)
    assert have["torch"] == torch.__version__ and {"numpy", "scipy", "gradlab"} <= set(have)

    done = run([py, "-c", USER_CODE], cwd=tmp_path)
    assert "public API OK" in done.stdout
    # the command line needs the pipeline extra and says so in one line (exit 2), as does python -m gradlab
    for cmd in ([str(env / "bin" / "gradlab"), "stages"], [py, "-m", "gradlab", "stages"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and "pip install 'gradlab[pipeline]'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
