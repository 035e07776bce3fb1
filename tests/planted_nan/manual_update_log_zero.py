# expect: cause=log_of_zero op=log phase=loss
# Logistic regression updated by hand (no optimizer): a probability of exactly 0 reaches the log.
import torch

torch.manual_seed(0)
w = torch.randn(3, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
x = torch.randn(32, 3)
y = (x @ torch.tensor([1.0, -2.0, 0.5]) > 0).float()
for step in range(6):
    p = torch.sigmoid(x @ w + b) * (1 - (step >= 3) * 1.0)
    loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()  # BUG
    loss.backward()
    with torch.no_grad():
        w -= 0.5 * w.grad
        b -= 0.5 * b.grad
        w.grad.zero_()
        b.grad.zero_()
