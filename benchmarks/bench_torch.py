"""Benchmark of lossvar.torch's per-example gradients against a hand-written torch.func.vmap(grad).

    python benchmarks/bench_torch.py            # about half a minute
    python benchmarks/bench_torch.py --device cuda

Model: digits (1797 examples, 64 standardized pixels, 10 classes), a
``torch.nn.Sequential`` 64-32-10 tanh (p = 2410), softmax cross-entropy,
float64, at its initialization (``torch.manual_seed(0)``).

- ``TorchProblem.grad(w, X, y)``: the (1797, 2410) float64 numpy array of
  per-example gradients, computed in blocks on the device and copied to the
  host array block by block.
- hand-written, the recipe of PyTorch's "Per-sample gradients" tutorial:
  ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))`` over
  ``torch.func.functional_call``, one call on all the examples, which returns
  one tensor per parameter on the device. Target: lossvar / hand <= 1.2.
- the same, then flattened into one (n, p) float64 array on the host (the
  product lossvar returns and its engines use): the cost of that product
  with nothing of lossvar's around it.

Each leg is timed as the best of several rounds (three calls in a row per leg
and round), the legs of a round one after the other, so that a busy machine
slows all alike; the CPU time that other
processes took during the run is printed (benchmarks/_common.py). On a GPU
every timed call ends with ``torch.cuda.synchronize()``. Never a test: tests do
not assert on wall-clock time. The ensemble part (run_sgd of a torch model)
comes with run_sgd's support of torch models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import lossvar.datasets
from lossvar.torch import TorchProblem, flatten_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, best_time, machine  # noqa: E402


def model(device):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    return net.to(device, torch.float64)


def hand_written(net, X, y):
    """The tutorial's per-example gradients: one tensor per parameter, on the device."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    device = params["0.weight"].device
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)

    def loss(p, x, t):
        out = torch.func.functional_call(net, p, (x.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, t.unsqueeze(0))

    per_example = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    n = X.shape[0]

    def raw():
        return per_example(params, Xt, yt)

    def flat():
        g = per_example(params, Xt, yt)
        return torch.cat([g[k].reshape(n, -1) for k in params], dim=1).cpu().numpy()

    return raw, flat


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15, help="best of this many rounds (default 15)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    meter = CpuMeter()
    data = lossvar.datasets.load("digits")
    X, y = np.array(data.X), np.array(data.y)
    net = model(device)
    problem = TorchProblem(net, torch.nn.CrossEntropyLoss(reduction="none"))
    w = flatten_params(net)
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"model: 64-32-10 tanh, p = {problem.p}, float64; per-example gradients of n = {X.shape[0]} "
          f"examples (best of {a.rounds})")

    raw, flat = hand_written(net, X, y)
    ours = problem.grad(w, X, y)
    # Same numbers, to rounding: the legs do equal work.
    assert np.allclose(ours, flat(), rtol=0, atol=1e-12)

    def timed(fn):
        def call():
            fn()
            sync()
        return call

    legs = {"lossvar TorchProblem.grad": timed(lambda: problem.grad(w, X, y)),
            "hand-written vmap(grad)": timed(raw),
            "hand-written, flattened to numpy": timed(flat)}
    best = dict.fromkeys(legs, float("inf"))
    for leg in legs.values():  # warm-up
        leg()
    for _ in range(a.rounds):
        for name, leg in legs.items():
            # Three calls in a row: the first after another leg can pay for that leg's memory
            # traffic (its 35 MB freed, ours faulted in afresh); the best is the leg's own time.
            best[name] = min(best[name], best_time(leg, 3))
    for name, t in best.items():
        print(f"  {name:34s} {t * 1e3:8.2f} ms")
    ours_t = best["lossvar TorchProblem.grad"]
    print(f"  lossvar / hand-written             {ours_t / best['hand-written vmap(grad)']:8.2f}"
          "   (target <= 1.2)")
    print(f"  lossvar / hand-written, flattened  {ours_t / best['hand-written, flattened to numpy']:8.2f}")
    load = meter.others()
    if load is not None:
        print(f"\nCPU during the run: this process {load['own']:.1f} s, other processes "
              f"{load['others']:.1f} s, steal {load['steal']:.1f} s")


if __name__ == "__main__":
    main()
