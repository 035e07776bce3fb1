# expect: cause=log_of_underflowed_weight op=log phase=loss
# Binary cross-entropy by hand on sigmoid outputs: large inputs saturate the sigmoid to exactly 0 or 1.
import torch
from torch import nn

torch.manual_seed(0)
m = nn.Linear(4, 1)
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for s in (1.0, 1000.0):
    x = torch.randn(16, 4) * s
    y = (torch.rand(16, 1) > 0.5).float()
    p = torch.sigmoid(m(x))
    loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()  # BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
