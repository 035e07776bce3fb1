# expect: cause=overflow op=pow phase=loss
# A learning rate far too large: the weights grow each step until the squared error overflows.
import torch
from torch import nn

torch.manual_seed(0)
m = nn.Linear(8, 1)
opt = torch.optim.SGD(m.parameters(), lr=5.0)
x, y = torch.randn(64, 8), torch.randn(64, 1)
for _step in range(200):
    loss = ((m(x) - y) ** 2).mean()  # BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
