"""Benchmark of lossvar.torch against hand-written torch.func code, in one run.

    python benchmarks/bench_torch.py                 # about two minutes on 2 cores
    python benchmarks/bench_torch.py --device cuda   # on a GPU

Model: digits (1797 examples, 64 standardized pixels, 10 classes), a
``torch.nn.Sequential`` 64-32-10 tanh (p = 2410), softmax cross-entropy.

Part 1, per-example gradients (float64, at the model's initialization,
``torch.manual_seed(0)``):

- ``TorchProblem.grad(w, X, y)``: a new (1797, 2410) float64 numpy array of
  per-example gradients, computed in blocks on the device and copied into it
  block by block;
- ``TorchProblem.grad(w, X, y, out=buffer)``: the same into one buffer made
  once and reused from call to call (as an engine that asks for the gradients
  of many batches does);
- hand-written, the recipe of PyTorch's "Per-sample gradients" tutorial:
  ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))`` over
  ``torch.func.functional_call``, one call on all the examples, which returns
  one tensor per parameter, on the device. Target: lossvar / hand <= 1.2;
- the same, then flattened into one new (n, p) float64 array on the host (the
  product lossvar returns), and into one (n, p) tensor made once and reused;
- on a GPU, also ``TorchProblem.grad`` from tensors on the device into a
  reused tensor there (the hand-written legs' product, no transfer).

Part 2, an ensemble of R = 128 replicate trainings (CPU float64 and float32;
a GPU's dtype when ``--device`` says so): Adam (lr 1e-3, PyTorch's form),
B = 32 drawn with replacement, 200 steps, each replicate from its own
initialization of the model, the full-data loss of every replicate recorded at
the start and the end:

- ``lossvar.run_sgd(TorchProblem(...), data, optim.adam(1e-3), ...,
  record=[0, 200])``: the whole call (its checks, the draws of its stream, the
  gathers on the device, ``mean_grad`` through ``vmap`` over the (R, p) stack,
  lossvar's Adam in place on the stack, the divergence check, the records);
- hand-written: ``torch.func.stack_module_state`` of the R models and
  ``vmap(grad(loss))`` over the stacked parameters, the batches gathered on the
  device from the same indices (drawn step by step from the same stream), and
  ``torch.optim.Adam`` over the stacked tensors (torch's own Adam arithmetic;
  the faster of its ``foreach`` and single-tensor forms, timed beforehand), the
  same two records. Target: lossvar / hand <= 1.3.

Both parts check that the legs agree to rounding before timing them. Each leg
is timed as the best of several rounds, the legs of a round one after the
other, so that a busy machine slows all alike; the CPU time that other
processes took during the run is printed (benchmarks/_common.py). On a GPU
every timed call ends with ``torch.cuda.synchronize()``. Never a test: tests do
not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

import lossvar.datasets
from lossvar import optim
from lossvar.sgd import run_sgd
from lossvar.streams import as_seed_sequence, stream
from lossvar.torch import TorchProblem, flatten_params, parameter_layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, best_time, machine  # noqa: E402

R, B, STEPS, LR, SEED = 128, 32, 200, 1e-3, 3


def model(device, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    return net.to(device, dtype)


def timed(fn, sync):
    def call():
        fn()
        sync()
    return call


def race(legs: dict, rounds: int, calls: int) -> dict:
    """Best time of each leg: a warm-up, then ``rounds`` rounds of ``calls`` calls in a row
    per leg (the first call after another leg can pay for that leg's memory traffic)."""
    best = dict.fromkeys(legs, float("inf"))
    for leg in legs.values():
        leg()
    for _ in range(rounds):
        for name, leg in legs.items():
            best[name] = min(best[name], best_time(leg, calls))
    return best


# -- part 1: per-example gradients ------------------------------------------------------------


def hand_written_grads(net, X, y):
    """The tutorial's per-example gradients: one tensor per parameter, on the device."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    device = params["0.weight"].device
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)

    def loss(p, x, t):
        out = functional_call(net, p, (x.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, t.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    n = X.shape[0]

    def raw():
        return per_example(params, Xt, yt)

    def flat():
        g = per_example(params, Xt, yt)
        return torch.cat([g[k].reshape(n, -1) for k in params], dim=1).cpu().numpy()

    buffer = torch.empty((n, sum(v.numel() for v in params.values())), dtype=torch.float64, device=device)

    def flat_into_buffer():
        g = per_example(params, Xt, yt)
        return torch.cat([g[k].reshape(n, -1) for k in params], dim=1, out=buffer)

    return raw, flat, flat_into_buffer


def part1(device, sync, rounds):
    data = lossvar.datasets.load("digits")
    X, y = np.array(data.X), np.array(data.y)
    net = model(device)
    problem = TorchProblem(net, torch.nn.CrossEntropyLoss(reduction="none"))
    w = flatten_params(net)
    print(f"\npart 1: per-example gradients of n = {X.shape[0]} examples, p = {problem.p}, float64 "
          f"(best of {rounds})")
    raw, flat, flat_into_buffer = hand_written_grads(net, X, y)
    buffer = np.empty((X.shape[0], problem.p))
    # Same numbers, to rounding: the legs do equal work.
    assert np.allclose(problem.grad(w, X, y, out=buffer), flat(), rtol=0, atol=1e-12)
    legs = {"new": ("lossvar grad, a new array", lambda: problem.grad(w, X, y)),
            "reused": ("lossvar grad(out=a reused buffer)", lambda: problem.grad(w, X, y, out=buffer)),
            "raw": ("hand-written vmap(grad)", raw),
            "flat": ("hand-written, flattened to a new array", flat),
            "flat_reused": ("hand-written, flattened into a reused buffer", flat_into_buffer)}
    if device.type != "cpu":
        # On a GPU the host buffer adds a transfer the hand-written legs do not make: the same
        # product on the device is the gradients into a reused tensor there, from tensors there.
        wt, Xt, yt = problem.device_arrays(w, X, y)
        on_device = torch.empty((X.shape[0], problem.p), dtype=torch.float64, device=device)
        legs["device"] = ("lossvar grad(out=a reused tensor on the device)",
                          lambda: problem.grad(wt, Xt, yt, out=on_device))
    best = race({k: timed(fn, sync) for k, (_, fn) in legs.items()}, rounds, 3)
    for k, t in best.items():
        print(f"  {legs[k][0]:46s} {t * 1e3:8.2f} ms")
    if "device" in best:
        print(f"  lossvar on the device / hand-written           {best['device'] / best['raw']:8.2f}"
              "   (target <= 1.2)")
        print(f"  lossvar on the device / hand-written, reused   {best['device'] / best['flat_reused']:8.2f}"
              "   (the same product)")
    print(f"  lossvar reused / hand-written                  {best['reused'] / best['raw']:8.2f}"
          "   (target <= 1.2)")
    print(f"  lossvar reused / hand-written flattened, reused {best['reused'] / best['flat_reused']:7.2f}"
          "   (the same product)")
    print(f"  lossvar new / hand-written flattened, new       {best['new'] / best['flat']:7.2f}")


# -- part 2: an ensemble of trainings ------------------------------------------------------------


def starts(device, dtype):
    """R models, each its own initialization, and their stacked flat vectors (R, p)."""
    nets = [model(device, dtype, seed=100 + r) for r in range(R)]
    return nets, np.stack([flatten_params(n) for n in nets])


def hand_written_ensemble(nets, X, y, foreach):
    """stack_module_state + vmap(grad) + torch.optim.Adam over the stacked tensors."""
    base = copy.deepcopy(nets[0]).to("meta")
    device = next(nets[0].parameters()).device
    Xt, yt = torch.as_tensor(X, device=device, dtype=next(nets[0].parameters()).dtype), \
        torch.as_tensor(y, device=device)
    n = X.shape[0]
    ce = torch.nn.functional.cross_entropy

    def batch_loss(p, b, x, t):
        return ce(functional_call(base, (p, b), (x,)), t)

    def full_loss(p, b):
        return ce(functional_call(base, (p, b), (Xt,)), yt)

    step_grads = vmap(grad(batch_loss))
    losses = vmap(full_loss)

    def run():
        params, buffers = stack_module_state(nets)
        opt = torch.optim.Adam(list(params.values()), lr=LR, foreach=foreach)
        rng = stream(as_seed_sequence(SEED), 0, 0, 0)  # run_sgd's stream of block 0
        with torch.no_grad():
            records = [losses(params, buffers)]
        for _ in range(STEPS):
            idx = torch.as_tensor(rng.integers(0, n, (R, B)), device=device)
            grads = step_grads(params, buffers, Xt[idx], yt[idx])
            for k, p in params.items():
                p.grad = grads[k]
            opt.step()
        with torch.no_grad():
            records.append(losses(params, buffers))
        final = torch.cat([p.detach().reshape(R, -1) for p in params.values()], dim=1)
        return torch.stack(records, dim=1).cpu().numpy(), final.cpu().numpy()

    return run


def part2(device, sync, rounds, dtypes):
    data = lossvar.datasets.load("digits")
    X, y = np.array(data.X), np.array(data.y)
    print(f"\npart 2: R = {R} trainings of {STEPS} Adam steps, B = {B} with replacement, the full-data "
          f"loss recorded at steps 0 and {STEPS} (best of {rounds})")
    for dtype in dtypes:
        nets, W0 = starts(device, dtype)
        problem = TorchProblem(model(device, dtype), torch.nn.CrossEntropyLoss(reduction="none"),
                               dtype=dtype)
        assert [s.name for s in parameter_layout(nets[0])] == [s.name for s in problem.layout]

        def ours(problem=problem, W0=W0):
            return run_sgd(problem, data, optim.adam(LR), steps=STEPS, batch_size=B, replicates=R,
                           sampling="with_replacement", w0=W0, rng=SEED, record=[0, STEPS])

        forms = {f: hand_written_ensemble(nets, X, y, foreach=f) for f in (True, False)}
        quick = {f"foreach={f}": timed(run, sync) for f, run in forms.items()}
        fastest = min(race(quick, 1, 1).items(), key=lambda kv: kv[1])[0]
        hand = forms[fastest == "foreach=True"]
        tr = ours()
        records, final = hand()
        # The same trainings, to rounding (float64); float32 within its own rounding.
        tol = 1e-9 if dtype == torch.float64 else 1e-3
        assert np.allclose(tr.final_params, final, rtol=tol, atol=tol), \
            np.abs(tr.final_params - final).max()
        assert np.allclose(tr.values("loss"), records, rtol=tol, atol=tol)
        best = race({"lossvar run_sgd": timed(ours, sync),
                     f"hand-written ({fastest})": timed(hand, sync)}, rounds, 1)
        print(f"  {str(dtype):14s}", "  ".join(f"{k} {v * 1e3:7.1f} ms" for k, v in best.items()),
              f"  lossvar / hand-written {best['lossvar run_sgd'] / best[f'hand-written ({fastest})']:5.2f}"
              "   (target <= 1.3)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="best of this many rounds (default 7)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--part", type=int, choices=(1, 2), default=None, help="only this part")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    meter = CpuMeter()
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch.get_num_threads() = {torch.get_num_threads()}")
    if a.part in (None, 1):
        part1(device, sync, 3 * a.rounds)
    if a.part in (None, 2):
        part2(device, sync, a.rounds, (torch.float64, torch.float32))
    load = meter.others()
    if load is not None:
        print(f"\nCPU during the run: this process {load['own']:.1f} s, other processes "
              f"{load['others']:.1f} s, steal {load['steal']:.1f} s")


if __name__ == "__main__":
    main()
