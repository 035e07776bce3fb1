# expect: cause=nan_gradient_at_zero op=sqrt phase=backward
# A distance loss sqrt(sum((a - b)^2)): where a == b the loss is 0 and finite, its gradient 0/0.
import torch
from torch import nn

torch.manual_seed(0)
enc = nn.Linear(3, 2, bias=False)
opt = torch.optim.SGD(enc.parameters(), lr=1e-2)
for step in range(3):
    a = torch.randn(6, 3)
    b = a.clone() if step == 1 else torch.randn(6, 3)  # a batch of identical pairs
    d = enc(a) - enc(b)
    loss = torch.sqrt((d * d).sum(-1)).mean()  # BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
