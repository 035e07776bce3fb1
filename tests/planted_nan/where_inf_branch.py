# expect: cause=masked_nonfinite_gradient op=div phase=loss
# torch.where picks the finite branch, but 1/x was computed at x = 0: the loss is finite, the gradient NaN.
import torch
from torch import nn

torch.manual_seed(0)
lin = nn.Linear(2, 1)
opt = torch.optim.SGD(lin.parameters(), lr=1e-2)
for _step in range(3):
    x = torch.randn(16, 2)
    gate = (x[:, :1] > 0).float()
    z = lin(x) * gate
    inv = torch.where(z != 0, 1.0 / z, torch.zeros_like(z))  # BUG
    loss = inv.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
