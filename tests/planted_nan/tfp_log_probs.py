# expect: cause=log_of_underflowed_weight op=log phase=loss
# The MDN asker's loss, ported from TFP: Categorical(probs=alpha) takes log(probs); one weight underflows to 0.
import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.rand(32, 1), torch.rand(32)
body = nn.Sequential(nn.Linear(1, 8), nn.Tanh())
head = nn.Linear(8, 9)
with torch.no_grad():
    head.bias[:3] = torch.tensor([60.0, -60.0, 0.0])  # logits 120 apart: softmax gives an exact 0
params = [*body.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)


def nll_loss(mu, sigma, alpha, y):
    log_alpha = torch.log(alpha)  # BUG
    comp = -0.5 * ((y[:, None] - mu) / sigma) ** 2 - torch.log(sigma) - 0.9189385
    return -torch.logsumexp(torch.log_softmax(log_alpha, -1) + comp, -1).mean()


for _step in range(5):
    logits, mu, raw = head(body(x)).split(3, dim=-1)
    alpha = torch.softmax(logits, -1)
    loss = nll_loss(mu, nn.functional.softplus(raw) + 1e-6, alpha, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
