"""Progress bars over the engine's work: one per call, or one per labelled phase of calls.

A bar counts estimated work, not chunks: a chunk of a condition weighs its
replicates times the elements a replicate touches (the engine passes these
weights in). Work a call will not do (conditions that meet their precision
target early) is taken off the total as soon as it is known, so the bar ends
at 100% and its ETA is not inflated by replicate caps that are never reached.
Progress never changes a result: it only observes finished chunks.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

__all__ = ["CallProgress", "Phase", "call_progress", "phase"]


_PHASE: contextvars.ContextVar = contextvars.ContextVar("lossvar_phase", default=None)


class Phase:
    """One labelled progress bar over a phase of work: one or several Monte Carlo calls.

    Made by :func:`phase`. ``total`` is the phase's work in the caller's
    units; every :func:`~lossvar.engine.simulate` inside the phase (directly, or through
    :func:`lossvar.loss_variance`, :func:`lossvar.sgd.run_sgd`, ...) counts
    one unit, or its share of the enclosing :meth:`part`, spread over its
    chunks by their estimated work. The bar shows a percentage and an ETA.

    Attributes
    ----------
    label : str
    n, total : float
        Work done and work planned, in the caller's units; ``total`` shrinks
        when a call skips work (a condition that stops at its precision
        target) or a part ends with calls unmade. Equal once the phase is done.
    """

    def __init__(self, label: str, total: float, enabled: bool, file=None):
        self.label, self.n, self.total = label, 0.0, float(total)
        self._part: list | None = None  # [weight left, calls left or None]
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=f"lossvar: {label}" if label else "lossvar",
                             file=file,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    @contextlib.contextmanager
    def part(self, weight: float, calls: int | None = 1):
        """Within the block, ``weight`` units of the phase shared by the next ``calls``
        engine calls (equally; ``None``: a number not known beforehand, each call
        taking half of what is left and the rest counted when the block ends)."""
        self._part = [float(weight), calls]
        try:
            yield self
        finally:
            left, self._part = self._part[0], None
            if calls is None:
                self._advance(left, 0.0)
            else:
                self._advance(0.0, -left)

    def claim(self) -> float:
        """The weight of the next engine call of the phase."""
        if self._part is None:
            return 1.0
        left, calls = self._part
        take = left / 2 if calls is None else (left / calls if calls else 0.0)
        self._part = [left - take, None if calls is None else max(calls - 1, 0)]
        return take

    def _advance(self, dn: float, dtotal: float):
        self.n += dn
        self.total += dtotal
        if self._bar is not None:  # n passes the total by rounding at most: tqdm warns on that
            self._bar.total = max(self.total, self.n)
            self._bar.update(dn)

    def close(self, complete: bool):
        # sums of shares differ from the total by rounding only when all is done
        if complete and abs(self.total - self.n) <= 1e-9 * max(1.0, abs(self.total)):
            self._advance(self.total - self.n, 0.0)
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def phase(label: str, total: float = 1, *, enabled: bool = True, file=None):
    """A :class:`Phase`: the Monte Carlo calls inside share one labelled progress bar.

    Parameters
    ----------
    label : str
        What the phase computes ("SGD runs, 10 schedules"); the bar reads
        ``lossvar: LABEL``.
    total : float
        The phase's work in the caller's units: the number of engine calls
        inside, or the sum of the weights of its :meth:`Phase.part` blocks.
    enabled : bool
        False: no bar, and the calls inside show none either.
    file : file object, optional
        Where the bar is written (default ``sys.stderr``).

    Progress never changes a result: it only observes finished chunks.

    Examples
    --------
    >>> import numpy as np
    >>> from lossvar import engine
    >>> uniform = engine.Condition((0,), 1000, 100, lambda rng, size: rng.random(size))
    >>> with engine.phase("three calls", total=3, enabled=False) as ph:
    ...     _ = engine.simulate([uniform], np.random.SeedSequence(1))
    ...     with ph.part(2):  # a call that weighs twice as much
    ...         _ = engine.simulate([uniform, uniform], np.random.SeedSequence(2))
    >>> ph.n == ph.total == 3
    True
    """
    ph = Phase(label, total, enabled, file)
    token = _PHASE.set(ph)
    complete = False
    try:
        yield ph
        complete = True
    finally:
        _PHASE.reset(token)
        ph.close(complete)


class CallProgress:
    """What one engine call reports to its phase: work done and planned, in the
    phase's units (the call's weight times the fraction of its initial plan).

    ``states`` are the call's per-condition states (their ``index``,
    ``condition``, ``chunks``, ``done``, ``target``, ``target_met`` and
    ``moments``); ``chunk_work(condition, start, stop)`` is the estimated work
    of blocks ``start..stop-1`` of a condition.
    """

    def __init__(self, states, chunk_work, ph: Phase, own: bool):
        self.ph, self.own, self.states = ph, own, states
        self.work = [[chunk_work(s.condition, a, b) for a, b in s.chunks] for s in states]
        self.collected: list[set] = [set() for _ in states]
        self.left = [sum(w) for w in self.work]  # estimated work still to come, per condition
        self.stop_count = None  # replicates at which the last condition with a target stopped
        self.done, planned = 0.0, sum(self.left)
        weight = ph.claim()
        self.scale = weight / planned if planned else 0.0
        if not planned:
            ph._advance(weight, 0.0)

    def tick(self, s, i):
        before = sum(self.left)
        self.collected[s.index].add(i)
        self.done += self.work[s.index][i]
        update = [s]
        if s.done and s.target is not None and s.target_met:
            self.stop_count = s.moments.count
            update = [t for t in self.states if t.target is not None]
        for t in update:
            self.left[t.index] = self._left(t)
        dn = self.scale * self.work[s.index][i]
        self.ph._advance(dn, dn + self.scale * (sum(self.left) - before))

    def _left(self, s) -> float:
        if s.done:
            return 0.0
        todo = [i for i in range(s.n_chunks) if i not in self.collected[s.index]]
        if s.target is not None and self.stop_count is not None:
            # as many replicates as the last condition that met its target needed
            blocks = max(1, math.ceil(self.stop_count / s.condition.block_size))
            todo = [i for i in todo if s.chunks[i][0] < blocks]
        return float(sum(self.work[s.index][i] for i in todo))

    def close(self, complete: bool):
        if complete:  # whatever was planned and not done was skipped
            self.ph._advance(0.0, -self.scale * sum(self.left))
        if self.own:
            self.ph.close(complete)


def call_progress(states, chunk_work, enabled: bool) -> CallProgress | None:
    """The call's progress: to the enclosing phase, else (if ``enabled``) its own bar;
    None, and no work estimated, when there is neither."""
    ph = _PHASE.get()
    if ph is None and not enabled:
        return None
    own = ph is None
    return CallProgress(states, chunk_work, Phase("", 1, True) if own else ph, own)
