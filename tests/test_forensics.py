"""gradlab.forensics: a planted non-finite value is found at the right step and place."""

from __future__ import annotations

import torch
from torch import nn

from gradlab.forensics import Event, NonFiniteWatch, all_finite


class Faulty(nn.Module):
    """Multiplies its input by NaN on step ``bad_step`` (counted by calls), identity otherwise."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step, self.calls = bad_step, 0

    def forward(self, x):
        self.calls += 1
        return x * float("nan") if self.calls - 1 == self.bad_step else x


def train(net, steps, plant=None, record_loss=True):
    """A plain loop with the watch: forward, loss (recorded), backward, step; ``plant(step, net)`` meddles."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    watch = NonFiniteWatch(net)
    for step in range(steps):
        watch.begin(step)
        out = net(x)
        loss = ((out - y) ** 2).mean()
        if record_loss:
            watch.record("loss", loss)
        watch.check_loss(loss)
        opt.zero_grad()
        loss.backward()
        if plant:
            plant(step, net)
        watch.check_grads(net)
        opt.step()
        watch.check_weights(net)
    return watch


def test_planted_nan_activation_is_found_at_its_step_and_layer():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), Faulty(bad_step=4), nn.Linear(8, 1))
    watch = train(net, 8)
    assert watch.first == Event(4, "activation", "2")
    assert watch.first.label == "activation:2"
    assert watch.weights_nonfinite_step == 4  # NaN gradient -> NaN weights after the step


def test_forward_order_upstream_layer_wins():
    net = nn.Sequential(Faulty(bad_step=1), nn.Linear(3, 8), Faulty(bad_step=1), nn.Linear(8, 1))
    assert train(net, 3).first == Event(1, "activation", "0")


def test_planted_nan_gradient_is_named():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def plant(step, net):
        if step == 5:
            net[2].bias.grad[0] = float("inf")

    watch = train(net, 8, plant)
    assert watch.first == Event(5, "grad", "2.bias")
    assert watch.weights_nonfinite_step == 5


def test_planted_nan_weight_is_named():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def plant(step, net):
        if step == 2:
            with torch.no_grad():
                net[0].weight[1, 1] = float("nan")

    watch = train(net, 4, plant)
    assert watch.first == Event(2, "weight", "0.weight")


def test_loss_only_and_recorded_order():
    watch = NonFiniteWatch()
    watch.begin(0)
    watch.record("component_density", torch.tensor([1.0, 0.0]))
    watch.record("mixture_logdensity", torch.tensor([0.0, -float("inf")]))
    watch.record("loss", torch.tensor(float("inf")))
    assert not watch.check_loss(torch.tensor(float("inf")))
    assert watch.first == Event(0, "mixture_logdensity", "mixture_logdensity")
    assert watch.first.label == "mixture_logdensity"
    other = NonFiniteWatch()
    other.begin(3)
    assert other.check_loss(torch.tensor(1.0)) and other.first is None
    assert not other.check_loss(torch.tensor(float("nan")))
    assert other.first == Event(3, "loss", "loss")


def test_clean_run_has_no_event_and_detach_removes_hooks():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    watch = train(net, 5)
    assert watch.first is None and watch.weights_nonfinite_step is None
    watch.detach()
    assert all(not m._forward_hooks for m in net.modules())
    assert all_finite([torch.ones(2), None]) and not all_finite([torch.ones(2), torch.tensor([float("nan")])])
