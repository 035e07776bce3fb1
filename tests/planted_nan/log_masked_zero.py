# expect: cause=masked_nonfinite_gradient op=log phase=loss
# log of probabilities, then only the observed entries are kept: log(0) = -inf is dropped, its gradient is not.
import torch
from torch import nn

torch.manual_seed(0)
lin = nn.Linear(3, 4)
opt = torch.optim.SGD(lin.parameters(), lr=1e-2)
for _step in range(3):
    x = torch.randn(8, 3)
    observed = torch.rand(8, 4) > 0.5
    p = torch.sigmoid(lin(x)) * observed  # probabilities of the observed entries, 0 elsewhere
    logp = torch.log(p)  # BUG
    loss = -logp[observed].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
