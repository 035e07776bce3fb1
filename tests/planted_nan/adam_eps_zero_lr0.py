# expect: cause=optimizer_nan_update op=addcdiv phase=optimizer step
# "Learning rate 0 and still NaN": Adam with eps=0 divides 0 by 0 for a parameter whose gradient is exactly 0.
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
with torch.no_grad():
    model[0].bias[:4] = -100.0  # four dead ReLU units: their weights get a gradient of exactly 0
opt = torch.optim.Adam(model.parameters(), lr=0.0, eps=0.0)
for _step in range(3):
    loss = model(torch.randn(16, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()  # BUG
