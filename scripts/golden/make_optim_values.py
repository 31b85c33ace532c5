#!/usr/bin/env python3
"""The PyTorch values tests/test_train.cpp checks AdamW and gradient clipping against.

torch.optim.AdamW with two parameter groups (a weight with weight decay 0.1, a bias without),
lr 0.1, betas (0.9, 0.999), eps 1e-8, three steps of fixed gradients, in float64; and
torch.nn.utils.clip_grad_norm_ over two tensors with max_norm 5.

  /usr/bin/python3 scripts/golden/make_optim_values.py
"""
import torch

torch.set_default_dtype(torch.float64)
w = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 0.25]]))
b = torch.nn.Parameter(torch.tensor([0.3, -0.1]))
opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                        lr=0.1, betas=(0.9, 0.999), eps=1e-8)
grads = [([[0.5, -1.0], [2.0, 0.0]], [0.1, -0.3]), ([[-0.2, 0.4], [1.0, 3.0]], [0.0, 0.2]),
         ([[0.3, 0.3], [-0.5, 1e-3]], [-1.0, 0.5])]
for gw, gb in grads:
    w.grad = torch.tensor(gw)
    b.grad = torch.tensor(gb)
    opt.step()
    print(repr(w.data.flatten().tolist()), repr(b.data.tolist()))
g = torch.nn.Parameter(torch.zeros(3))
h = torch.nn.Parameter(torch.zeros(2))
g.grad = torch.tensor([3.0, 4.0, 0.0])
h.grad = torch.tensor([12.0, 0.0])
n = torch.nn.utils.clip_grad_norm_([g, h], 5.0)
print(float(n), g.grad.tolist(), h.grad.tolist())
