# expect: cause=bn_running_stats op=batch_norm phase=buffers
# One batch with a huge value: BatchNorm's running variance overflows, training goes on, evaluation is NaN.
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
for step in range(4):
    x = torch.randn(16, 2)
    if step == 2:
        x[3] = 1e22  # a sensor glitch
    loss = model(x).pow(2).mean()  # BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
print(model(torch.randn(4, 2)))
