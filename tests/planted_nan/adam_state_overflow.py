# expect: cause=optimizer_state_overflow op=addcmul phase=optimizer state
# A huge but finite gradient: Adam's second moment grad ** 2 overflows to inf and the weights stop moving.
import torch
from torch import nn

torch.manual_seed(0)
lin = nn.Linear(2, 1)
opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
for _step in range(3):
    loss = (lin(torch.ones(4, 2)) * 1e25).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()  # BUG
