# expect: cause=half_precision_overflow op=linear phase=forward
# Under float16 autocast a matmul of large activations exceeds 65504: inf, fine in float32.
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
for scale in (1.0, 200000.0):
    x = torch.randn(32, 16) * scale
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(x)  # BUG
    loss = out.float().pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
