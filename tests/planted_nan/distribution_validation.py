# expect: cause=zero_scale op=Normal phase=forward
# torch.distributions validates its arguments: a relu scale of exactly 0 raises before any loss is computed.
import torch
from torch import nn
from torch.distributions import Normal

torch.manual_seed(0)
x, y = torch.rand(32, 1), torch.rand(32)
net = nn.Linear(1, 2)
opt = torch.optim.SGD(net.parameters(), lr=1e-2)
for step in range(3):
    mu, raw = net(x).unbind(-1)
    if step == 1:
        raw = raw - 10.0  # the scale head drifts negative
    dist = Normal(mu, torch.relu(raw))  # BUG
    loss = -dist.log_prob(y).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
