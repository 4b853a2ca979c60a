"""One block of an SGD ensemble kept on the problem's device (:func:`lossvar.run_sgd`).

A problem with the optional method ``device_arrays(w, X, y)`` (for example
:class:`lossvar.torch.TorchProblem`) says in which arrays it computes: their
array-API namespace, device and dtype. :class:`DeviceBlock` then keeps
everything of a block there: the (R_b, p) parameters, the optimizer's state
(:func:`lossvar.optim.in_place` on those arrays), the data, the batches
(gathered there from the integer indices of the block's stream, the same
indices as for a numpy problem) and the records, of which only the recorded
numbers come back to the host. Each step reads back one number, the
divergence check (on a GPU, one synchronization per step).

Only the array API standard is used here (through array-api-compat), so any
namespace whose elementwise functions accept ``out=`` would do.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from ..optim import in_place
from ..optim.base import state_leaves
from ._block import batches
from ._inputs import Spec, to_host

__all__ = ["DeviceBlock", "array_kind", "check_optimizer", "start_arrays"]


def _type_name(obj) -> str:
    """``torch.Tensor``: the qualified name of an object's type, for errors (its repr,
    ``<class 'torch.Tensor'>``, unwrapped)."""
    return str(type(obj)).removeprefix("<class '").removesuffix("'>")


def array_kind(a) -> str:
    """``torch.Tensor of dtype torch.float64 on cpu``: what a device array is, for errors."""
    return f"{_type_name(a)} of dtype {a.dtype} on {array_api_compat.device(a)}"


def _same_kind(a, like) -> bool:
    return (array_api_compat.is_array_api_obj(a) and type(a) is type(like) and a.dtype == like.dtype
            and array_api_compat.device(a) == array_api_compat.device(like))


def start_arrays(spec: Spec):
    """The first start of the call as the problem's arrays, shape (1, p): what the optimizer
    is probed on."""
    problem = spec.problem
    return problem.device_arrays(spec.w0.reshape(-1, spec.w0.shape[-1])[:1], None, None)[0]  # type: ignore[attr-defined]


def check_optimizer(optimizer, w) -> None:
    """Refuse, before any work, an optimizer that cannot run on the problem's arrays ``w``.

    One probe step on a copy of ``w`` with a zero gradient: ``init`` and ``update``
    must run and give updates and a state of ``w``'s kind (namespace, dtype, device).
    The step size is evaluated there too (schedules run on the host, on the step count).
    """
    xp = array_api_compat.array_namespace(w)
    probe = xp.asarray(w, copy=True)
    try:
        state = optimizer.init(probe)
        updates, state = optimizer.update(xp.zeros_like(probe), state, probe)
    except Exception as exc:
        raise TypeError(f"`optimizer` must run on the problem's arrays ({array_kind(w)}) for an ensemble "
                        f"kept on the device; its init or update raised {type(exc).__name__}: {exc}") \
            from exc
    bad = [a for a in [updates, *state_leaves(state)] if not _same_kind(a, w)]
    if bad or tuple(getattr(updates, "shape", ())) != tuple(w.shape):
        got = (_type_name(bad[0])
               + (f" of dtype {bad[0].dtype}" if hasattr(bad[0], "dtype") else "")) if bad else \
            f"updates of shape {tuple(getattr(updates, 'shape', ()))}"
        raise TypeError(f"`optimizer` must give updates and a state of the problem's arrays "
                        f"({array_kind(w)}, shape {tuple(w.shape)}) for an ensemble kept on the device; "
                        f"got {got}: write it with the array API (lossvar.optim's transformations are)")


class DeviceBlock:
    """Picklable simulator (given a picklable optimizer): one block of replicates, the first
    of which is replicate ``start`` of the call, kept on the problem's device.

    Returns the named records of :class:`~lossvar.sgd._block.Block`, as float64 numpy arrays.
    """

    def __init__(self, spec: Spec, start: int, w0, threads: int = 1):
        self.spec, self.start, self.w0, self.threads = spec, start, w0, threads

    def __call__(self, rng, size):
        s = self.spec
        p = s.w_star.size
        start = np.array(np.broadcast_to(self.w0, (size, p)), dtype=np.float64, order="C")
        w, X, y = s.problem.device_arrays(start, s.X, s.y)
        run = _Run(s, w, X, y)
        xp = run.xp
        total = xp.asarray(w, copy=True) if s.average else None
        out = np.full((size, s.record.size, len(s.fields)), np.nan)
        first_bad = np.full(size, -1, dtype=np.int64)
        rows = s.param_rows
        keep = rows[(rows >= self.start) & (rows < self.start + size)] - self.start
        keep_dev = xp.asarray(keep, device=run.device)
        params = np.full((keep.size, s.record.size, p), np.nan)
        next_batch = self._batches(run, rng, size)
        g = xp.empty_like(w)
        advance = in_place(s.optimizer, w)
        # The non-finite check of numpy's blocks: w * 0 sums to 0 (of either sign) when
        # every entry is finite and to NaN as soon as one is inf or NaN; the rows are
        # scanned only then.
        scratch = xp.empty_like(w)
        slot = 0
        with np.errstate(over="ignore", invalid="ignore"):
            if s.record[0] == 0:
                run.record(out, 0, w, total, 0, first_bad)
                params[:, 0] = to_host(xp.take(w, keep_dev, axis=0))
                slot = 1
            for t in range(1, s.steps + 1):
                Xb, yb = next_batch(t)
                advance(w, s.problem.mean_grad(w, Xb, yb, out=g))
                if bool(xp.sum(xp.multiply(w, 0.0, out=scratch)) != 0.0):
                    bad = ~xp.all(xp.isfinite(w), axis=1)
                    if bool(xp.any(bad)):
                        _mark(w, bad, to_host(bad), t, first_bad)
                if total is not None:
                    total += w
                if slot < s.record.size and s.record[slot] == t:
                    run.record(out, slot, w, total, t, first_bad)
                    params[:, slot] = to_host(xp.take(w, keep_dev, axis=0))
                    slot += 1
        return {"records": out, "final": to_host(w).astype(np.float64), "first_bad": first_bad,
                "params": params}

    def _batches(self, run, rng, size):
        """A function t -> (X_batch, y_batch) on the device for update t = 1, 2, ..."""
        s, xp = self.spec, run.xp
        X, y = run.X, run.y
        if s.sampling == "full":
            return lambda t: (X, y)
        if s.sampling == "fresh":
            def arrays(Xs, ys):
                return s.problem.device_arrays(None, Xs, ys)[1:]
            return batches(s, rng, size, self.threads, None, arrays)
        B, shape = s.batch_size, (size, s.batch_size) + tuple(X.shape[1:])

        def gather(idx):
            # Only the integer indices travel to the device; the batches are made there.
            flat = xp.asarray(np.reshape(idx, -1), device=run.device)
            return (xp.reshape(xp.take(X, flat, axis=0), shape),
                    xp.reshape(xp.take(y, flat, axis=0), (size, B)))
        return batches(s, rng, size, self.threads, gather, None)


def _mark(w, bad, bad_host, t, first_bad):
    """Replicates ``bad`` diverged at step t (the first time for some): their rows become NaN."""
    new = bad_host & (first_bad < 0)
    first_bad[new] = t
    w[bad] = float("nan")


class _Run:
    """The device arrays of one call of a block: its data, w*, and the records' scratch."""

    def __init__(self, spec: Spec, w, X, y):
        self.spec, self.X, self.y = spec, X, y
        self.xp = xp = array_api_compat.array_namespace(w)
        self.device = array_api_compat.device(w)
        self.w_star = xp.asarray(spec.w_star, dtype=w.dtype, device=self.device)
        self.loss = xp.empty((w.shape[0],), dtype=w.dtype, device=self.device)

    def record(self, out, slot, w, total, t, first_bad):
        s, xp = self.spec, self.xp
        metrics = self.metrics(w)
        if total is not None:
            metrics += self.metrics(total / (t + 1))
        # One transfer per record: the (size, fields) numbers, nothing else.
        values = to_host(xp.stack(metrics, axis=1)).astype(np.float64)
        bad = np.zeros(values.shape[0], dtype=bool)
        if s.dist_known:
            bad |= ~np.isfinite(values[:, 1])
        if s.loss_known:
            bad |= ~np.isfinite(values[:, 0])
        if bad.any():
            _mark(w, xp.asarray(bad, device=self.device), bad, t, first_bad)
            values[bad] = np.nan
        out[:, slot] = values

    def metrics(self, w):
        s, xp = self.spec, self.xp
        diff = w - self.w_star
        dist2 = xp.sum(diff * diff, axis=1)
        if s.X is not None:
            # A copy: the buffer serves the average's loss of the same record too.
            loss = xp.asarray(s.problem.mean_loss(w, self.X, self.y, out=self.loss), copy=True)
        else:
            host = np.full(w.shape[0], np.nan)
            w_host = to_host(w).astype(np.float64)
            ok = np.isfinite(w_host).all(axis=1)
            if s.loss_known and ok.any():
                host[ok] = s.population.loss_moments(w_host[ok])[0]
            loss = xp.asarray(host, dtype=w.dtype, device=self.device)
        return [loss, dist2]
