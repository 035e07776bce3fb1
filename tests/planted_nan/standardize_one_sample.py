# expect: cause=zero_std op=std phase=loss
# REINFORCE with returns standardised per episode: an episode of one step has std NaN (n - 1 = 0).
import torch
from torch import nn

torch.manual_seed(0)
policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
for length in (5, 3, 1, 4):
    obs = torch.randn(length, 4)
    actions = torch.randint(0, 2, (length,))
    returns = torch.linspace(1.0, 0.5, length)
    adv = (returns - returns.mean()) / returns.std()  # BUG
    logp = torch.log_softmax(policy(obs), -1).gather(1, actions[:, None]).squeeze(1)
    loss = -(adv * logp).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
