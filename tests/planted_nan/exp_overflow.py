# expect: cause=overflow op=exp phase=forward
# A scale made with exp: the raw output grows until exp overflows float32 (exp(x) > 3.4e38 for x > 88.7).
import torch
from torch import nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return torch.exp(self.lin(x))  # BUG


torch.manual_seed(0)
head = Head()
with torch.no_grad():
    head.lin.weight.fill_(30.0)
opt = torch.optim.SGD(head.parameters(), lr=0.0)
for scale in (1.0, 2.0, 4.0):
    x = torch.ones(8, 2) * scale
    loss = head(x).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
