"""The gradient noise scale of a DistributedDataParallel training run, measured with lossvar.

Each of W ranks computes the gradient of its own batch of b examples: the small
batch. DistributedDataParallel all-reduces them into the mean gradient of the W b
examples of the step: the big batch. ``NoiseScaleHook(model, monitor,
distributed=True)`` reads each rank's squared norm as the backward pass produces
it, averages it over the ranks (one all-reduce of a scalar), reads the squared
norm of the all-reduced gradient, and feeds ``GradientNoiseMonitor(b, W b)``:
unbiased running estimates of ||G||^2 and tr Sigma (with the finite-population
correction, the batches being drawn without replacement from the N examples)
and B_simple with an interval, at no extra gradient computation.

Run it from anywhere (CPU, the gloo backend; needs scikit-learn for the data)::

    python docs/recipes/ddp_noise_scale.py                 # 2 ranks, 300 steps
    python docs/recipes/ddp_noise_scale.py --world-size 4 --lr 0 --steps 100 --out pairs.json

With ``--lr 0`` the model stays at its start, where the estimates can be checked
against the exact values (from the N per-example gradients of the same model,
printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import lossvar
from lossvar.torch import NoiseScaleHook, TorchProblem, flatten_params


def make_model() -> torch.nn.Module:
    """The same start on every rank: 64-32-10 tanh on digits, float64."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()


def rank_batch(step: int, rank: int, world_size: int, n: int, b: int, seed: int) -> np.ndarray:
    """Rank ``rank``'s b examples at ``step``: the step's W b examples are drawn without
    replacement from the N (the same draw on every rank: a shared seed), then split."""
    idx = np.random.default_rng([seed, step]).choice(n, world_size * b, replace=False)
    return idx[rank * b:(rank + 1) * b]


def worker(rank: int, world_size: int, port: int, args: argparse.Namespace) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    data = lossvar.datasets.load("digits")
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    model = DistributedDataParallel(make_model())
    loss_fn = torch.nn.CrossEntropyLoss()
    b = args.batch_size
    monitor = lossvar.GradientNoiseMonitor(b, world_size * b, n=data.n, sampling="without_replacement",
                                           ema=args.ema)
    hook = NoiseScaleHook(model, monitor, distributed=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    pairs = []
    for step in range(args.steps):
        idx = torch.as_tensor(rank_batch(step, rank, world_size, data.n, b, args.seed))
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()  # DDP all-reduces: .grad is the mean over ranks
        pairs.append(hook.step())  # (mean over ranks of ||G_b||^2, ||G_Wb||^2), before the step
        optimizer.step()
    if rank == 0:
        est = monitor.estimate(weighted=False)
        print(f"{world_size} ranks x b = {b}: the monitor's running estimate over {args.steps} steps")
        print(est)
        if args.lr == 0:
            problem = TorchProblem(make_model(), torch.nn.CrossEntropyLoss(reduction="none"))
            grads = problem.grad(flatten_params(model.module), data.X, data.y)  # (N, p), exact
            exact = lossvar.GradientNoiseResult.from_grads(grads)
            print(f"exact at the (fixed) start: ||G||^2 = {exact.grad_norm2:.6g}, "
                  f"tr Sigma = {exact.trace_cov:.6g}, B_simple = {exact.b_simple:.6g}")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"pairs": pairs, "world_size": world_size, "b": b, "seed": args.seed,
                           "grad_norm2": est.grad_norm2, "trace_cov": est.trace_cov}, fh)
    dist.destroy_process_group()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16, help="examples per rank and step (b)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the pairs of norms and the estimate to this JSON file")
    args = p.parse_args(argv)
    with socket.socket() as s:  # a free port for the ranks' rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args.world_size, port, args), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
