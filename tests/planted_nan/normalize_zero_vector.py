# expect: cause=zero_norm op=div phase=loss
# Normalising embeddings by hand: a zero embedding gives 0 / 0.
import torch
from torch import nn

torch.manual_seed(0)
emb = nn.Embedding(10, 4)
with torch.no_grad():
    emb.weight[7] = 0.0  # a padding row
opt = torch.optim.SGD(emb.parameters(), lr=1e-2)
for ids in (torch.tensor([1, 2, 3]), torch.tensor([4, 7, 5])):
    e = emb(ids)
    u = e / e.norm(dim=-1, keepdim=True)  # BUG
    loss = -(u @ u.T).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
