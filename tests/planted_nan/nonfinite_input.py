# expect: cause=nonfinite_input op=linear phase=input batch
import torch
from torch import nn

torch.manual_seed(0)
x = torch.rand(64, 1)
y = torch.rand(64, 1)
x[37, 0] = float("nan")  # a missing value in the data
model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.0)
for start in range(0, 64, 16):
    xb, yb = x[start : start + 16], y[start : start + 16]
    loss = ((model(xb) - yb) ** 2).mean()  # BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
