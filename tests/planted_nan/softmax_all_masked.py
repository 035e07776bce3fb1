# expect: cause=all_masked op=softmax phase=forward
# Attention with a padding mask: one sequence is all padding, its softmax row is all -inf.
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x, pad):
        scores = self.q(x) @ self.k(x).transpose(1, 2)
        scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1) @ x  # BUG


torch.manual_seed(0)
att = Attention()
opt = torch.optim.Adam(att.parameters(), lr=1e-3)
lengths = [(5, 3), (5, 0)]  # the second batch has an empty sequence
for lens in lengths:
    x = torch.randn(2, 5, 8)
    pad = torch.arange(5)[None, :] >= torch.tensor(lens)[:, None]
    loss = att(x, pad).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
