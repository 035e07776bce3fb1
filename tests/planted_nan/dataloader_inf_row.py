# expect: cause=nonfinite_input op=linear phase=input batch
# An inf in one row of the dataset, met through a shuffling DataLoader.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(128, 10)
Y = torch.randint(0, 3, (128,))
X[77] = float("inf")
dl = DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(inplace=True), nn.Linear(32, 3))
opt = torch.optim.Adam(model.parameters())
lossf = nn.CrossEntropyLoss()
for _epoch in range(2):
    for xb, yb in dl:
        out = model(xb)  # BUG
        loss = lossf(out, yb)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
