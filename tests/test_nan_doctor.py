"""The NaN doctor on planted bugs: the right cause class, op and user line, in every way it can be run.

Each script in tests/planted_nan/ plants one bug in an ordinary training loop; ``gradlab doctor`` must name the
cause class, the op and the line marked ``# BUG``. The decorator, the context manager and the Lightning callback
must agree with it, the cheap mode must not change a clean run, and ``mode="off"`` must do nothing.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
import warnings
import weakref

import nan_compare
import pytest
import torch
import torch.nn.functional as F
from nan_planted import PLANTED, Planted, planted
from torch import nn

import gradlab
from gradlab.doctor import CAUSES, NonFiniteError
from gradlab.doctor.script import diagnose_script

PLANTED_BUGS = planted()
ROOT = PLANTED.parents[1]


def test_at_least_twelve_cause_classes_are_planted_and_documented():
    causes = {p.cause for p in PLANTED_BUGS}
    assert len(causes) >= 12, sorted(causes)
    assert causes <= set(CAUSES)
    for cause in CAUSES.values():
        assert cause.symptom and cause.why and cause.fix
    assert gradlab.nan_causes() == CAUSES


@functools.cache
def _report(bug: Planted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diagnose_script(bug.path)


@pytest.mark.parametrize("bug", PLANTED_BUGS, ids=[p.name for p in PLANTED_BUGS])
def test_gradlab_doctor_names_cause_op_and_user_line(bug):
    report = _report(bug)
    assert report is not None, f"{bug.name}: nothing found"
    assert report.cause == bug.cause, f"{bug.name}:\n{report}"
    assert bug.op in report.op, f"{bug.name}:\n{report}"
    assert (report.file, report.line) == (str(bug.path), bug.line), f"{bug.name}:\n{report}"
    assert report.phase == bug.phase, f"{bug.name}:\n{report}"
    text = str(report)
    assert f"{bug.path}:{bug.line}" in text and report.cause in text and CAUSES[bug.cause].fix in text


def test_docs_page_tables_are_generated_from_the_planted_bugs_and_the_cause_table():
    """docs/nan_doctor.md's cause table and its comparison with detect_anomaly are what this test renders
    (GRADLAB_WRITE_DOCS=1 rewrites them)."""
    rows = [nan_compare.Row(bug, _report(bug), *nan_compare.run_anomaly(bug)) for bug in PLANTED_BUGS]
    assert all(r.doctor_op and r.doctor_line and r.doctor_cause for r in rows)
    path = nan_compare.docs_path()
    text = path.read_text()
    new = text
    for name, block in (("causes", nan_compare.causes_table()), ("comparison", nan_compare.table(rows))):
        begin = next(line for line in text.splitlines() if line.startswith(f"<!-- doctor-{name}:"))
        new = nan_compare.splice(new, begin, f"<!-- /doctor-{name} -->", block, str(path))
    if os.environ.get("GRADLAB_WRITE_DOCS") == "1":
        path.write_text(new)
    assert new == text, "docs/nan_doctor.md: a generated table is out of date (GRADLAB_WRITE_DOCS=1 rewrites it)"


@pytest.mark.slow  # a fresh interpreter (torch import); the same loss is checked in-process below
def test_docs_page_python_block_runs(tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```$", nan_compare.docs_path().read_text(), re.S | re.M)
    assert blocks
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "log_of_underflowed_weight" in done.stdout


def _library_only_env(tmp_path) -> dict:
    """An environment in which the pipeline extra cannot be imported (as after ``pip install gradlab``)."""
    block = tmp_path / "block"
    for name in ("typer", "mlflow", "pytorch_lightning", "lightning", "dvc", "pandas"):
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError({'No module named ' + repr(name)!r}, name={name!r})\n"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(block), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_python_m_gradlab_doctor_works_without_the_pipeline_extra(tmp_path):
    bug = next(p for p in PLANTED_BUGS if p.name == "tfp_log_probs")
    out = tmp_path / "report.json"
    env = _library_only_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "gradlab", "doctor", "--json", str(out), str(bug.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"{bug.path}:{bug.line}" in done.stderr and "log_of_underflowed_weight" in done.stderr
    data = json.loads(out.read_text())
    assert data["cause"] == "log_of_underflowed_weight" and data["op"] == "log" and data["line"] == bug.line
    # the pipeline command says what to install and points library users to `import gradlab`
    done = subprocess.run(
        [sys.executable, "-m", "gradlab", "stages"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2 and "import gradlab" in done.stderr and "Traceback" not in done.stderr


def test_gradlab_doctor_command_usage_and_a_clean_script(tmp_path):
    from gradlab.doctor.script import main

    assert main([]) == 2
    assert main([str(tmp_path / "missing.py")]) == 2
    assert main(["--seed", "x", "a.py"]) == 2
    clean = tmp_path / "clean.py"
    clean.write_text(
        "import torch\nm = torch.nn.Linear(2, 1)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for _ in range(3):\n    loss = m(torch.randn(4, 2)).pow(2).mean()\n"
        "    opt.zero_grad()\n    loss.backward()\n    opt.step()\n"
    )
    assert main([str(clean)]) == 0


def test_the_typer_command_runs_the_doctor(tmp_path):
    from gradlab.cli import main

    bug = next(p for p in PLANTED_BUGS if p.name == "relu_scale")
    assert main(["doctor", str(bug.path)]) == 1


# --- the decorator: cheap checks, replay, state restored ------------------------------------------------------


def _mdn_like(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 6))
    with torch.no_grad():
        net[2].bias[:2] = torch.tensor([60.0, -60.0])
    return net


def test_step_decorator_replays_the_asker_loss_and_restores_the_state():
    net = _mdn_like()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    doctor = gradlab.nan_doctor(net, opt)
    x, y = torch.rand(16, 1), torch.rand(16)
    before = [p.detach().clone() for p in net.parameters()]

    @doctor.step
    def train_step(x, y):
        logits, mu, raw = net(x).split(2, dim=-1)
        alpha = torch.softmax(logits, -1)
        log_alpha = torch.log(alpha)  # the asker's TFP path: Categorical(probs=alpha)
        comp = -0.5 * ((y[:, None] - mu) / F.softplus(raw)) ** 2 - torch.log(F.softplus(raw))
        loss = -torch.logsumexp(torch.log_softmax(log_alpha, -1) + comp, -1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    with pytest.raises(NonFiniteError) as err:
        train_step(x, y)
    report = err.value.report
    assert (report.cause, report.op, report.phase, report.step) == ("log_of_underflowed_weight", "log", "loss", 0)
    assert report.code == "log_alpha = torch.log(alpha)  # the asker's TFP path: Categorical(probs=alpha)"
    assert report.file == __file__ and report.inputs[0].zeros > 0 and report.inputs[0].finite
    # the bad step never reached the weights: they are as before, finite; Adam has no state yet
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert not opt.state


def test_step_decorator_names_an_input_batch_not_the_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    doctor = gradlab.nan_doctor(model, opt, on_find="record")
    running = model[1].running_mean.clone()

    @doctor.step
    def train_step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x = torch.randn(16, 3)
    x[9, 2] = float("nan")
    assert train_step(x, torch.randn(16, 1)) is None
    report = doctor.report
    assert (report.phase, report.cause, report.op, report.module) == ("input batch", "nonfinite_input", "linear", "0")
    assert report.inputs[0].rows_nonfinite == (9,)
    assert any("BatchNorm" in n for n in report.notes) and any("learning rate 0" in n for n in report.notes)
    assert torch.equal(model[1].running_mean, running)  # the buffers are restored after the replay


def test_step_decorator_optimizer_phase_without_and_with_snapshot():
    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        with torch.no_grad():
            model[0].bias[:4] = -100.0
        return model, torch.optim.Adam(model.parameters(), lr=0.0, eps=0.0)

    for snapshot, op in ((False, "Adam.step"), (True, "addcdiv")):
        model, opt = make()
        doctor = gradlab.nan_doctor(model, opt, snapshot=snapshot)

        @doctor.step
        def train_step(x, model=model, opt=opt):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        with pytest.raises(NonFiniteError) as err:
            train_step(torch.randn(16, 4))
        report = err.value.report
        assert report.cause == "optimizer_nan_update" and op in report.op, report
        assert report.code == "opt.step()"


def test_cheap_mode_leaves_a_clean_run_unchanged_and_off_does_nothing():
    def run(mode):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        doctor = gradlab.nan_doctor(model, opt, mode=mode)

        @doctor.step
        def train_step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        g = torch.Generator().manual_seed(2)
        losses = [float(train_step(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g))) for _ in range(5)]
        return losses, doctor

    plain, off = run("off")
    cheap, doctor = run("cheap")
    traced, _ = run("trace")
    assert plain == cheap == traced and all(math.isfinite(v) for v in plain)
    assert doctor.report is None and doctor.steps == 5 and off.steps == 0
    assert torch.Tensor.backward.__module__ == "torch._tensor"  # the cheap checks are gone after each step


def test_cheap_check_is_exact_and_the_step_restores_the_buffers_of_its_start():
    """The fused check (one sum per tensor) confirms an overflowing sum entry by entry; ``torch.autograd.backward``
    called directly is watched too; after clean steps a bad one is replayed from its own start (BatchNorm's
    running statistics, kept in copies refilled each step) and leaves the weights as they were."""
    from gradlab.doctor.doctor import _finite_all

    assert _finite_all([torch.full((4,), 3e38), None, torch.tensor(1.0)])  # the sum overflows, the values are finite
    assert not _finite_all([torch.zeros(3), torch.tensor([1.0, float("-inf")])])
    assert not _finite_all([torch.tensor([float("inf")]), torch.tensor([float("-inf")])])
    assert not _finite_all([torch.tensor(float("nan"), requires_grad=True)])

    backward = torch.autograd.backward
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    doctor = gradlab.nan_doctor(model, opt, on_find="record")

    @doctor.step
    def train_step(x, y, scale=1.0):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y) + torch.log(torch.tensor(scale))  # a constant: the gradients stay finite
        torch.autograd.backward(loss)
        opt.step()
        return loss

    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        assert train_step(torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)) is not None
    state = [t.clone() for t in (*model.buffers(), *model.parameters())]
    assert train_step(torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g), scale=0.0) is None
    report = doctor.report
    assert (report.step, report.phase, report.op, report.cause) == (3, "loss", "log", "log_of_zero")
    assert all(torch.equal(a, b) for a, b in zip(state, (*model.buffers(), *model.parameters()), strict=True))
    assert torch.autograd.backward is backward  # put back after each step


def test_between_steps_the_doctor_does_nothing_and_goes_with_its_step():
    """The doctor's optimizer-step hooks stay registered between steps (registering them each step costs more)
    but do nothing there; nothing keeps the doctor alive, and its hooks go with it."""
    from torch.optim.optimizer import _global_optimizer_pre_hooks as step_hooks

    before, backward = set(step_hooks), torch.autograd.backward
    lin = nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    doctor = gradlab.nan_doctor(lin, opt)

    @doctor.step
    def train_step(x):
        opt.zero_grad()
        lin(x).sum().backward()
        opt.step()

    train_step(torch.ones(3, 2))
    ours = set(step_hooks) - before
    assert len(ours) == 1 and torch.autograd.backward is backward
    lin.weight.grad.fill_(float("nan"))
    opt.step()  # outside the decorated step: not watched
    doctor_ref = weakref.ref(doctor)
    del doctor, train_step
    assert doctor_ref() is None and not ours & set(step_hooks)


def test_cheap_mode_checks_a_parameter_group_added_later():
    lin, extra = nn.Linear(2, 1), nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    doctor = gradlab.nan_doctor(lin, opt, on_find="record")

    @doctor.step
    def train_step(x):
        opt.zero_grad()
        loss = lin(x).sum() + (extra * x.sum(0)).sum()
        loss.backward()
        opt.step()
        return loss

    assert train_step(torch.ones(3, 2)) is not None
    opt.add_param_group({"params": [extra]})
    assert train_step(torch.ones(3, 2)) is not None
    extra.register_hook(lambda g: g * float("nan"))
    assert train_step(torch.ones(3, 2)) is None and doctor.report.step == 2  # its NaN gradient is seen


def test_unrelated_errors_are_raised_unchanged():
    doctor = gradlab.nan_doctor(mode="cheap")

    @doctor.step
    def train_step():
        return torch.ones(2, 3) @ torch.ones(2, 3)

    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        train_step()
    with pytest.raises(ValueError, match="mode must be one of"):
        gradlab.nan_doctor(mode="fast")


def test_context_manager_trace_mode_and_diagnose():
    torch.manual_seed(0)
    lin = nn.Linear(3, 3)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError) as err, gradlab.nan_doctor(lin, opt, mode="trace"):
        for step in range(3):
            v = lin(torch.randn(4, 3)) * (step < 2)
            u = v / v.norm(dim=-1, keepdim=True)
            opt.zero_grad()
            u.sum().backward()
            opt.step()
    report = err.value.report
    assert (report.cause, report.op, report.step) == ("zero_norm", "div", 2)
    assert report.code == "u = v / v.norm(dim=-1, keepdim=True)"

    def loss_fn(x):
        return torch.sqrt(x - 1.0).sum()

    report = gradlab.diagnose(loss_fn, torch.zeros(3))
    assert (
        report.cause == "negative_domain" and report.op == "sqrt" and report.code == "return torch.sqrt(x - 1.0).sum()"
    )
    assert gradlab.diagnose(loss_fn, torch.full((3,), 2.0)) is None


def test_context_manager_cheap_mode_reports_the_phase():
    lin = nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    doctor = gradlab.nan_doctor(lin, opt, on_find="record")
    with doctor:
        loss = lin(torch.tensor([[float("inf"), 1.0]])).sum()
        loss.backward()
    assert doctor.report.phase == "loss" and "@doctor.step" in " ".join(doctor.report.notes)


def test_lightning_callback_replays_the_training_step():
    pl = pytest.importorskip("pytorch_lightning")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(1, 2)
            with torch.no_grad():
                self.net.bias[1] = -50.0

        def training_step(self, batch, batch_idx):
            x, y = batch
            mu, raw = self.net(x).unbind(-1)
            sigma = torch.relu(raw)
            return (0.5 * ((y - mu) / sigma) ** 2 + torch.log(sigma)).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.rand(32, 1), torch.rand(32))
    doctor = gradlab.nan_doctor()
    trainer = pl.Trainer(
        max_steps=3,
        callbacks=[doctor.lightning_callback()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=8))
    report = err.value.report
    assert (report.cause, report.op) == ("zero_scale", "div") and report.code.startswith("return (0.5 * ((y - mu)")


def test_diagnose_a_known_bad_step_of_the_mdn_study_leaves_the_run_unchanged():
    """What the mdn study calls per trial: its cause names come from the doctor's table."""
    from gradlab.studies.mdn.losses import mixture_loss

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 9))
    with torch.no_grad():
        net[3].bias[0] = -150.0  # the study's saturated head: one mixing weight underflows to exactly 0
    x, y = torch.rand(32, 1), torch.rand(32)
    running = net[1].running_mean.clone()

    def replay():
        logits, mu, raw = net(x).split(3, dim=-1)
        mixture_loss(logits, mu, torch.nn.functional.softplus(raw) + 1e-6, y, "probs_log").backward()

    report = gradlab.diagnose(replay, step=7, skip_gradlab=False, keep_state=net)
    assert (report.cause, report.op, report.step) == ("log_of_underflowed_weight", "log", 7)
    assert report.file.endswith("studies/mdn/losses.py") and "torch.log(alpha)" in report.code
    assert torch.equal(net[1].running_mean, running) and all(p.grad is None for p in net.parameters())
