# expect: cause=zero_scale op=div phase=loss
import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.rand(32, 1), torch.rand(32)
net = nn.Linear(1, 2)
with torch.no_grad():
    net.bias[1] = -50.0  # relu of a negative raw output: a scale of exactly 0
opt = torch.optim.SGD(net.parameters(), lr=1e-2)
for _step in range(3):
    mu, raw = net(x).unbind(-1)
    sigma = torch.relu(raw)
    z = (y - mu) / sigma  # BUG
    loss = (0.5 * z**2 + torch.log(sigma)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
