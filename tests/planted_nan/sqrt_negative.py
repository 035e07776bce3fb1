# expect: cause=negative_domain op=sqrt phase=loss
# A "distance" computed as sqrt(a^2 + b^2 - 2ab) with a sign slip: the argument goes negative.
import torch
from torch import nn

torch.manual_seed(0)
enc = nn.Linear(4, 3)
opt = torch.optim.SGD(enc.parameters(), lr=1e-2)
for _step in range(3):
    a, b = enc(torch.randn(8, 4)), enc(torch.randn(8, 4))
    sq = (a * a).sum(-1) + (b * b).sum(-1) + 2 * (a * b).sum(-1) - 4.0
    dist = torch.sqrt(sq)  # BUG
    loss = dist.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
