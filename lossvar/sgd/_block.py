"""One block of an SGD ensemble: its batches, its steps and its records (:func:`lossvar.run_sgd`)."""

from __future__ import annotations

import numpy as np

from .. import _threads
from .. import sampling as _sampling
from ..optim import in_place
from ._inputs import Spec

#: A population is asked for the examples of up to _FRESH_MAX_STEPS steps at
#: once, at most about _FRESH_ELEMENTS numbers (part of the definition of the
#: random numbers).
_FRESH_ELEMENTS = 2**16
_FRESH_MAX_STEPS = 64

#: With replacement, the indices of several steps are drawn in one call, about
#: this many at once (2 MiB of intp); the numbers do not depend on it.
_DRAW_ELEMENTS = 2**18

#: A record's full-data loss is cut among threads when it has at least this many
#: per-example losses per thread (fewer: the threads cost more than they save).
_THREADED_ELEMENTS = 2**18


class Block:
    """Picklable simulator (given a picklable optimizer): one block of replicates,
    the first of which is replicate ``start`` of the call.

    Returns the block's named records (the engine joins blocks name by name):
    ``records`` (size, n_rec, n_fields), ``final`` parameters (size, p),
    ``first_bad`` step (size,; -1 if none) and ``params`` (k_b, n_rec, p) of the
    block's replicates chosen by ``record_params``.

    ``threads``: how many threads the full-data loss of a record may use (each
    calls ``problem.mean_loss`` on its own part of the replicates; the rows are
    independent, so the bits do not depend on it).
    """

    def __init__(self, spec: Spec, start: int, w0, threads: int = 1):
        self.spec, self.start, self.w0, self.threads = spec, start, w0, threads

    def __call__(self, rng, size):
        s = self.spec
        p = s.w_star.size
        w = np.array(np.broadcast_to(self.w0, (size, p)), dtype=np.float64, order="C")
        total = w.copy() if s.average else None
        out = np.full((size, s.record.size, len(s.fields)), np.nan)
        first_bad = np.full(size, -1, dtype=np.int64)
        rows = s.param_rows
        keep = rows[(rows >= self.start) & (rows < self.start + size)] - self.start
        params = np.full((keep.size, s.record.size, p), np.nan)
        next_batch = self._batches(rng, size)
        # One gradient array per block, written by the problem, read by the optimizer's
        # in-place form (the bits of its update, without new arrays every step).
        g = np.empty((size, p))
        advance = in_place(s.optimizer, w)
        # The non-finite check: one dot with zeros is 0 (of either sign) when every
        # entry of w is finite and NaN as soon as one is inf or NaN (inf * 0 is NaN);
        # the rows are scanned only then.
        zeros = np.zeros(w.size)
        slot = 0
        with np.errstate(over="ignore", invalid="ignore"):
            if s.record[0] == 0:
                self._record(out, 0, w, total, 0, first_bad)
                params[:, 0] = w[keep]
                slot = 1
            for t in range(1, s.steps + 1):
                Xb, yb = next_batch(t)
                advance(w, s.problem.mean_grad(w, Xb, yb, out=g))
                if np.dot(w.reshape(-1), zeros) != 0.0:
                    bad = ~np.isfinite(w).all(axis=1)
                    if bad.any():
                        self._mark(w, bad, t, first_bad)
                if total is not None:
                    total += w
                if slot < s.record.size and s.record[slot] == t:
                    self._record(out, slot, w, total, t, first_bad)
                    params[:, slot] = w[keep]
                    slot += 1
        return {"records": out, "final": w, "first_bad": first_bad, "params": params}

    @staticmethod
    def _mark(w, bad, t, first_bad):
        new = bad & (first_bad < 0)
        first_bad[new] = t
        w[bad] = np.nan

    def _record(self, out, slot, w, total, t, first_bad):
        s = self.spec
        metrics = [*self._metrics(w)]
        if total is not None:
            metrics += self._metrics(total / (t + 1))
        values = np.stack(metrics, axis=1)
        bad = np.zeros(values.shape[0], dtype=bool)
        if s.dist_known:
            bad |= ~np.isfinite(values[:, 1])
        if s.loss_known:
            bad |= ~np.isfinite(values[:, 0])
        if bad.any():
            self._mark(w, bad, t, first_bad)
            values[bad] = np.nan
        out[:, slot] = values

    def _metrics(self, w):
        s = self.spec
        dist2 = np.sum((w - s.w_star) ** 2, axis=1)
        if s.X is not None:
            loss = self._full_loss(w)
        else:
            loss = np.full(w.shape[0], np.nan)
            ok = np.isfinite(w).all(axis=1)
            if s.loss_known and ok.any():
                loss[ok] = s.population.loss_moments(w[ok])[0]
        return [loss, dist2]

    def _full_loss(self, w):
        """``problem.mean_loss`` of every row of ``w`` on the full data, the rows cut
        into parts computed at once on this process's threads when there are enough."""
        s = self.spec
        R = w.shape[0]
        parts = min(self.threads, R, max(1, R * s.X.shape[0] // _THREADED_ELEMENTS))
        if parts == 1:
            return s.problem.mean_loss(w, s.X, s.y)
        loss = np.empty(R)
        cuts = [R * i // parts for i in range(parts + 1)]

        def part(i):
            rows = slice(cuts[i], cuts[i + 1])
            loss[rows] = s.problem.mean_loss(w[rows], s.X, s.y)

        later = [_threads.Later(part, i) for i in range(1, parts)]
        try:
            part(0)
        finally:  # none left running on this block's arrays
            for job in later:
                job.wait()
        for job in later:
            job.result()
        return loss

    def _batches(self, rng, size):
        """A function t -> (X_batch, y_batch) for update t = 1, 2, ..."""
        s = self.spec
        if s.sampling == "full":
            return lambda t: (s.X, s.y)
        if s.sampling == "fresh":
            return batches(s, rng, size, self.threads, None,
                           lambda X, y: (X, np.asarray(y, np.float64)))
        # The batches are gathered into two arrays made once per block (the
        # steps of a block use them one after another); mode="clip" because
        # "raise" would buffer ``out`` anew (the indices are in range).
        Xb = np.empty((size, s.batch_size, s.X.shape[1]))
        yb = np.empty((size, s.batch_size))

        def gather(idx):
            np.take(s.X, idx, axis=0, out=Xb, mode="clip")
            np.take(s.y, idx, out=yb, mode="clip")
            return Xb, yb
        return batches(s, rng, size, self.threads, gather, None)


def batches(s, rng, size, threads, gather, arrays):
    """A function t -> (X_batch, y_batch) for update t = 1, 2, ... of a block of ``size``
    replicates, drawing from ``rng`` as the module docstring of :mod:`lossvar.sgd` says.

    ``gather(idx)`` makes the batches of a data set from their indices, shape (size, B);
    ``arrays(X, y)`` the arrays of a population's draw for several steps, X of shape
    (steps, size, B, d) and y (steps, size, B), which are then indexed by the step.
    """
    B = s.batch_size
    if s.sampling == "fresh":
        d = s.population.n_features

        # One draw serves several steps: a population draw has a fixed cost
        # much larger than a small batch's.
        chunk = int(np.clip(_FRESH_ELEMENTS // (size * B * d), 1, _FRESH_MAX_STEPS))
        cache = {}

        def fresh(t):
            i = (t - 1) % chunk
            if i == 0:
                n_steps = min(chunk, s.steps - t + 1)
                data = s.population.sample(n_steps * size * B, rng)
                cache["X"], cache["y"] = arrays(data.X.reshape(n_steps, size, B, d),
                                                np.asarray(data.y).reshape(n_steps, size, B))
            return cache["X"][i], cache["y"][i]
        return fresh
    n = s.X.shape[0]
    if s.sampling == "with_replacement":
        # The indices of several steps in one draw, of shape (k, size, B): the
        # same numbers as one draw per step (see the module docstring). As intp,
        # which np.take would otherwise make of them at every call (the values of
        # an integer draw do not depend on its dtype).
        per_draw = max(1, min(s.steps, _DRAW_ELEMENTS // (size * B)))
        ahead = threads > 1
        drawn = {}

        def draw(t):
            k = min(per_draw, s.steps - t + 1)
            return rng.integers(0, n, (k, size, B), dtype=np.intp)

        def with_replacement(t):
            i = (t - 1) % per_draw
            if i == 0:
                pending = drawn.pop("next", None)
                drawn["idx"] = draw(t) if pending is None else pending.result()
                if ahead and t + per_draw <= s.steps:
                    # The next chunk is drawn in a thread while this one is
                    # used: the same calls in the same order, one at a time.
                    drawn["next"] = _threads.Later(draw, t + per_draw)
            return gather(drawn["idx"][i])
        return with_replacement
    per_epoch = n // B
    epoch = {}

    def reshuffled(t):
        i = (t - 1) % per_epoch
        if i == 0:
            epoch["batches"] = _sampling.epoch_batches(rng, n, B, size)
        return gather(epoch["batches"][:, i])
    return reshuffled
