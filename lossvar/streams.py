"""Random streams: the one way lossvar turns an ``rng`` argument into random numbers.

Every public entry point takes a keyword-only ``rng`` (SPEC 7) with one meaning:

- ``None``: fresh OS entropy (not reproducible; the root is kept on the
  result, e.g. ``VarianceResult.seed``, so that it can be);
- an ``int`` or a :class:`numpy.random.SeedSequence`: the root, used as
  given (the caller's SeedSequence is never advanced);
- a :class:`numpy.random.Generator`: a child of its SeedSequence is spawned,
  as ``Generator.spawn`` does, so two calls with the same Generator give
  independent numbers and the sequence of calls is reproducible.

From the root, every unit of work draws from its own stream, derived
statelessly by a key (:func:`stream`): a condition, a block of replicates, a
step. A stream depends only on (root, key), never on which worker, chunk or
call order computes it, so results are bit-identical whatever the workers
(numpy.random, "Parallel random number generation": spawn per unit of work,
never ``seed + i``). Keys at the top of the 32-bit range are reserved for
purposes that must not collide with any condition's key (:data:`RESERVED`).

The meaning is the same everywhere ``rng`` is accepted: the Monte Carlo
entry points (``loss_variance``, ``run_sgd``, ...), ``Population.sample``
(:func:`generator`), the fits' bootstraps and the studies' sub-tasks
(:func:`children`). The one other kind of random argument is the block
Generator that the engine hands to a simulator and to the draw primitives
of :mod:`lossvar.sampling` (``with_replacement(rng, ...)`` and friends, like
numpy's own ``Generator`` methods): those take only a Generator and draw
from it in place, because they are steps inside one unit of work.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["INTERVAL_BOOTSTRAP", "RATE_BOOTSTRAP", "RESERVED", "as_seed_sequence", "children",
           "describe", "generator", "stream"]

#: Reserved stream keys, by purpose: the interval bootstrap of a variance table
#: and the bootstrap of a convergence-rate fit. Condition keys (batch sizes,
#: schedule indices) stay far below them.
INTERVAL_BOOTSTRAP = 2**32 - 1
RATE_BOOTSTRAP = 2**32 - 2
RESERVED = {"interval_bootstrap": INTERVAL_BOOTSTRAP, "rate_bootstrap": RATE_BOOTSTRAP}


def as_seed_sequence(rng) -> np.random.SeedSequence:
    """Normalize an ``rng`` argument (SPEC 7) to the root SeedSequence of a call.

    - ``None``: fresh OS entropy (the result is then not reproducible; the
      entropy is kept on the result so that it can be).
    - ``int`` or ``SeedSequence``: used as given; the same value always gives
      the same root, and the caller's SeedSequence is never advanced.
    - ``Generator``: a child of its SeedSequence is spawned, as
      ``Generator.spawn`` does, so two calls with the same Generator draw
      different (independent) numbers, and the sequence of calls is reproducible.

    Streams of a call are derived statelessly from the root by
    :func:`stream` with a key, never by ``seed + i`` (numpy.random,
    "Parallel random number generation").
    """
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        return np.random.SeedSequence(rng.entropy, spawn_key=rng.spawn_key, pool_size=rng.pool_size)
    if isinstance(rng, np.random.Generator):
        seed_seq = getattr(rng.bit_generator, "seed_seq", None)
        if not isinstance(seed_seq, np.random.SeedSequence):
            raise TypeError(
                "`rng` must be an int, a SeedSequence, a Generator built from a SeedSequence "
                f"or None; got a Generator whose bit generator has no SeedSequence ({seed_seq!r})"
            )
        return seed_seq.spawn(1)[0]
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"`rng` must be a non-negative integer seed; got {rng!r}")
        return np.random.SeedSequence(int(rng))
    raise TypeError(
        f"`rng` must be an int, a numpy SeedSequence, a numpy Generator or None; got {rng!r}"
    )


def stream(root: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """The Generator for the unit of work ``key`` under ``root``.

    Equal to the Generator of ``root``'s child with that spawn key, built
    without mutating ``root``, so the stream depends only on (root, key): not
    on which worker, chunk or call order computes it.
    """
    child = np.random.SeedSequence(
        root.entropy, spawn_key=tuple(root.spawn_key) + tuple(int(k) for k in key),
        pool_size=root.pool_size,
    )
    return np.random.Generator(np.random.PCG64(child))


def generator(rng) -> np.random.Generator:
    """The Generator a call draws from directly: ``stream(as_seed_sequence(rng))``.

    For a call that draws its numbers in one place (``Population.sample``)
    rather than in keyed units of work; ``rng`` has the one meaning of
    :func:`as_seed_sequence` (a Generator gives a child, not itself).
    """
    return stream(as_seed_sequence(rng))


def children(rng, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent child roots of ``rng`` (one per sub-task of a study).

    Child ``i`` has key ``i`` under the root of ``rng``, derived statelessly:
    the same as ``SeedSequence(seed).spawn(n)`` for an int seed, but never
    advancing a SeedSequence that the caller passed in.
    """
    root = as_seed_sequence(rng)
    return [np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + (i,),
                                   pool_size=root.pool_size) for i in range(int(n))]


def describe(root: np.random.SeedSequence) -> str:
    """The root as text (for checkpoint fingerprints and manifests)."""
    return f"SeedSequence(entropy={root.entropy}, spawn_key={tuple(root.spawn_key)})"
