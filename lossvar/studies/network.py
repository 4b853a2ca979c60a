"""The network case of the studies: a tanh multi-layer perceptron on scikit-learn's digits.

Every study of the lecture shows its claim on such a network beside its convex
cases, chosen by ``--network`` (``64-32-10``: 64 pixels, a hidden layer of 32
tanh units, 10 classes; ``none`` leaves it out). The network is
:func:`lossvar.datasets.network_for` on ``digits`` (ridge 1e-2), its runs start
from :data:`START_SEED`'s draw of :meth:`lossvar.MLP.init` (w = 0 is a saddle
of every network with a hidden layer: no gradient reaches the first layer), and
its reference point is :func:`lossvar.datasets.reference_params`, a local
minimum. Which numbers have exact theory on a network: docs/guide/networks.md.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import numpy as np

import lossvar

#: The data set of every network case.
DATA = "digits"
#: Its input width and number of classes: the first and last entries of ``--network``.
D, K = 64, 10
#: Seed of the start every network run begins from.
START_SEED = 0
#: The most hidden units a ``--network`` may list (the studies keep its Hessian: p^2 numbers).
MAX_UNITS = 512


def parse(text: str) -> str:
    """argparse type of ``--network``: ``none`` or widths joined by ``-``, 64 first and 10 last.

    Returned as typed (normalized, e.g. ``64-32-10``), so that the manifest's
    value parses again.
    """
    if text == "none":
        return text
    try:
        sizes = [int(part) for part in text.split("-")]
    except ValueError:
        sizes = []
    ok = (len(sizes) >= 2 and sizes[0] == D and sizes[-1] == K and min(sizes) >= 1
          and sum(sizes[1:-1]) <= MAX_UNITS)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"must be 'none' or the layer widths of a tanh network on digits joined by '-', from "
            f"{D} inputs to {K} classes with at most {MAX_UNITS} hidden units in all (e.g. "
            f"{D}-32-{K}); got {text!r}")
    return "-".join(map(str, sizes))


parse.__name__ = "network"


def add_flag(p, full: str, quick: str) -> None:
    """Add ``--network`` to a study's parser (default None, filled from FULL or QUICK)."""
    p.add_argument("--network", type=parse, default=None, metavar="SIZES",
                   help=f"the tanh network on {DATA} shown beside the other cases, as widths "
                        f"{D}-h_1-...-{K}, or 'none' (default {full}, quick {quick})")


@dataclass(frozen=True)
class Network:
    """The network case of a run: the data, the network and its start."""

    data: lossvar.Dataset
    problem: lossvar.MLP

    @property
    def label(self) -> str:
        """The case's name in tables: ``"mlp 64-32-10 tanh (digits)"``."""
        return f"{self.problem.name} ({self.data.name})"

    @property
    def p(self) -> int:
        return self.problem.p

    def start(self) -> np.ndarray:
        """The start every run begins from (one Glorot draw, :data:`START_SEED`)."""
        return self.problem.init(rng=START_SEED)

    def reference(self, data: lossvar.Dataset | None = None) -> np.ndarray:
        """A local minimum of the mean loss on ``data`` (default: all of digits)."""
        return lossvar.datasets.reference_params(self.data if data is None else data, self.problem)

    def curvature(self, w, data: lossvar.Dataset | None = None) -> float:
        """The largest eigenvalue of the Hessian of the mean loss at ``w`` (the dense Hessian)."""
        d = self.data if data is None else data
        return float(np.linalg.eigvalsh(self.problem.hessian(w, d.X, d.y))[-1])


def load(text: str | None) -> Network | None:
    """The network of a ``--network`` value (None for 'none')."""
    if text is None or text == "none":
        return None
    data = lossvar.datasets.load(DATA)
    sizes = [int(part) for part in text.split("-")]
    return Network(data, lossvar.datasets.network_for(data, hidden=sizes[1:-1]))


def one_thread():
    """One BLAS thread while it lasts: a network's matrices here are small (at most 1797 x
    512), and on a busy machine threads that wait for each other cost far more than they
    give; the same for every run, so the bits do not depend on the machine's load."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@contextlib.contextmanager
def maybe(case: Network | None):
    """:func:`one_thread` when there is a network case, else nothing."""
    if case is None:
        yield
        return
    with one_thread():
        yield


def paired_comparisons(values: dict, baseline: str, metric: str, confidence: float) -> list[dict]:
    """Each method against ``baseline`` on per-run values from common random numbers.

    ``values`` maps a method to its runs' values (run r of every method saw the same
    start and the same batches), so the differences run by run are independent across
    runs: a paired Student t test and interval (:func:`scipy.stats.ttest_rel`) per
    method; the verdicts (:func:`verdicts`) are judged after Holm's correction across
    all the comparisons of a study.
    """
    import scipy.stats

    base = np.asarray(values[baseline], dtype=np.float64)
    rows = []
    for name, v in values.items():
        if name == baseline:
            continue
        v = np.asarray(v, dtype=np.float64)
        diff = v - base
        mean, se = (float(x) for x in lossvar.stats.mean_se(diff))
        test = scipy.stats.ttest_rel(v, base)
        ci = test.confidence_interval(confidence)
        rows.append(dict(metric=metric, method=name, baseline=baseline, value=float(v.mean()),
                         baseline_value=float(base.mean()), difference=mean, se=se,
                         ci_low=float(ci.low), ci_high=float(ci.high),
                         pvalue=float(test.pvalue), runs=diff.size))
    return rows


def verdicts(table, confidence: float):
    """The comparisons' table with ``holm_pvalue`` (Holm across every row) and ``verdict``:
    "lower than BASELINE" or "higher than BASELINE" where the Holm-adjusted p-value is
    below 1 - ``confidence``, else "no difference detected"."""
    table = table.copy()
    table["holm_pvalue"] = lossvar.stats.holm(table.pvalue.to_numpy(float))
    significant = table.holm_pvalue < 1 - confidence
    table["verdict"] = [
        (f"{'lower' if r.difference < 0 else 'higher'} than {r.baseline}" if s
         else "no difference detected") for r, s in zip(table.itertuples(), significant, strict=True)]
    return table


def largest_eigenvalue(problem, w, data: lossvar.Dataset) -> float:
    """The largest eigenvalue of the Hessian of the mean loss at ``w``, from Hessian-vector
    products (ARPACK's Lanczos, :func:`scipy.sparse.linalg.eigsh`, from a fixed start, so
    the same bits every run): a few dozen products instead of the dense Hessian's p."""
    import scipy.sparse.linalg

    p = np.size(w)
    op = scipy.sparse.linalg.LinearOperator(
        (p, p), matvec=lambda v: problem.hvp(w, data.X, data.y, np.ravel(v)), dtype=np.float64)
    return float(scipy.sparse.linalg.eigsh(op, k=1, which="LA", v0=np.ones(p), tol=1e-8,
                                           return_eigenvectors=False)[0])


def copies(X, y, r: int, s: float, rng, **kwargs) -> lossvar.Dataset:
    """``r`` copies of the examples ``(X, y)``; each copy's inputs get independent
    N(0, s^2) noise per feature (0: exact copies). ``kwargs`` go to the Dataset."""
    X = np.tile(X, (r, 1))
    if s > 0:
        X = X + s * rng.standard_normal(X.shape)
    return lossvar.Dataset(X, np.tile(y, r), **kwargs)


def ensembles(net: Network, optimizers: dict, args, label: str, **kwargs) -> dict:
    """:func:`lossvar.run_sgd` of each optimizer on the network from its start (one BLAS
    thread, one progress phase ``label``); ``kwargs`` go to run_sgd. By optimizer name."""
    from lossvar import studies
    from lossvar.studies import checks

    with one_thread(), checks.phase(args, label, len(optimizers)):
        return {name: lossvar.run_sgd(net.problem, net.data, opt, w0=net.start(), **kwargs,
                                      **studies.execution(args))
                for name, opt in optimizers.items()}


def curves(runs: dict, key: str, confidence: float, per_epoch: int | None = None):
    """The training loss of each run against the step, mean across runs with its standard
    error and Student t interval (few runs: n - 1 degrees of freedom), and of the
    Polyak-Ruppert average where recorded, one row per (``key`` = name, step)."""
    import pandas as pd

    out = []
    for name, tr in runs.items():
        s = tr.by_step
        t = pd.DataFrame({key: name, "step": s.step})
        if per_epoch:
            t["epoch"] = s.step / per_epoch
        for col in ("loss", "avg_loss"):
            if f"{col}_mean" in s:
                t[col], t[f"{col}_se"] = s[f"{col}_mean"], s[f"{col}_se"]
                t[f"{col}_ci_low"], t[f"{col}_ci_high"] = lossvar.stats.mean_interval(
                    s[f"{col}_mean"], s[f"{col}_se"], confidence, dof=s.n - 1)
        out.append(t.assign(replicates=s.n))
    return pd.concat(out, ignore_index=True)


def comparison_lines(table) -> list[str]:
    """The comparisons (:func:`verdicts`) as the rows of a markdown table."""
    lines = ["| comparison | method | mean | baseline | its mean | difference | interval | "
             "Holm p | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.metric} | {r.method} | {r.value:.4g} | {r.baseline} | "
                     f"{r.baseline_value:.4g} | {r.difference:.3g} | [{r.ci_low:.3g}, "
                     f"{r.ci_high:.3g}] | {r.holm_pvalue:.2g} | {r.verdict} |")
    return lines
