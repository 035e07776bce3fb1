"""The doctor on fused optimizer updates (``_foreach_*_``): every parameter of the list is updated in place at once."""

from __future__ import annotations

import pytest
import torch

from gradlab.doctor import diagnose


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("foreach", [True, False])
def test_an_update_that_overflows_several_weights_at_once_is_weight_overflow(momentum, foreach):
    """With foreach, one op makes several parameters inf: the others are not inputs from outside the step."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=3e38, momentum=momentum, foreach=foreach)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    with torch.no_grad():
        net[0].weight.mul_(1e3)  # weights of order 1e3 + an update of order 3e38 in float32: inf

    def step():
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()

    report = diagnose(step, keep_state=net)
    assert report is not None
    assert (report.phase, report.cause) == ("optimizer step", "weight_overflow"), report
    assert ("foreach" in report.op) == foreach, report.op
