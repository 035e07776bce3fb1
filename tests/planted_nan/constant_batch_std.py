# expect: cause=zero_std op=div phase=loss
# Standardising a batch of rewards that are all equal: std 0, (r - mean) / 0 = 0/0.
import torch
from torch import nn

torch.manual_seed(0)
value = nn.Linear(3, 1)
opt = torch.optim.SGD(value.parameters(), lr=1e-2)
for rewards in (torch.tensor([1.0, 0.0, 2.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])):
    r = (rewards - rewards.mean()) / rewards.std()  # BUG
    loss = ((value(torch.ones(4, 3)).squeeze(-1) - r) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
