"""Gradient transformations in optax's shape, and the in-place form derived from each.

A :class:`GradientTransformation` is a pair of functions ``init(params) ->
state`` and ``update(updates, state, params=None) -> (updates, state)``; a
step of an optimizer is ::

    updates, state = tx.update(grads, state, params)
    params = apply_updates(params, updates)

Each transformation of lossvar is written once, as an *arithmetic*: a function
``arithmetic(ops, updates, state, params)`` that does all its elementwise work
through ``ops`` (an :class:`Ops`), naming a destination for every result.
:meth:`GradientTransformation.update` runs it with an ``Ops`` that ignores the
names and returns fresh arrays (nothing is mutated); :func:`in_place` runs the
same function with an ``Ops`` that writes each result into the array of that
name: the state's own arrays (by field name) or scratch made once. The same
operations in the same order, so the same bits, by construction.

The arithmetic is written against the array API standard
(:func:`array_api_compat.array_namespace`), so the same definitions run on
numpy arrays and on PyTorch tensors (or any array with an array-API
namespace whose elementwise functions accept ``out=``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

__all__ = ["EmptyState", "GradientTransformation", "Ops", "apply_updates", "chain", "in_place",
           "state_leaves"]


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


class GradientTransformation(NamedTuple):
    """A gradient transformation: optax's ``(init, update)`` pair, with a description.

    Attributes
    ----------
    init : callable
        ``init(params) -> state``.
    update : callable
        ``update(updates, state, params=None) -> (updates, state)``: pure (nothing
        it is given is mutated).
    name : str
        For tables (e.g. ``"adam"``).
    hyperparams : mapping
        The validated hyper-parameters (``lr`` as passed: a float or a schedule).
    arithmetic : callable or None
        ``arithmetic(ops, updates, state, params) -> (updates, state)``, the one
        definition behind ``update`` and :func:`in_place`; None for a
        transformation built from ``init`` and ``update`` alone (which
        :func:`chain` and :func:`in_place` accept, calling its ``update``).
    """

    init: Callable
    update: Callable
    name: str = "transformation"
    hyperparams: Mapping = MappingProxyType({})
    arithmetic: Callable | None = None


class Ops:
    """The elementwise operations of an arithmetic, written to named destinations.

    Every method takes ``into``, the name of the destination. Without buffers
    (``update``) the name is ignored and the result is a new array; with
    buffers (:func:`in_place`) it is written into the buffer of that name: the
    state's array of that field name, or scratch of the parameters' shape made
    when first named. A destination may be one of the operands (elementwise
    operations allow it); an arithmetic never names its input ``updates`` or
    ``params`` as a destination, nor a state array it still has to read.
    """

    __slots__ = ("_children", "buffers", "template", "xp")

    def __init__(self, xp, buffers: dict | None = None, template=None):
        self.xp, self.buffers, self.template = xp, buffers, template
        self._children: dict[int, Ops] = {}

    def _to(self, into):
        if self.buffers is None:
            return None
        out = self.buffers.get(into)
        if out is None:
            out = self.buffers[into] = self.xp.empty_like(self.template)
        return out

    def child(self, i: int, state) -> Ops:
        """The operations of the i-th part of a chain, whose state is ``state``."""
        if self.buffers is None:
            return self
        ops = self._children.get(i)
        if ops is None:
            ops = self._children[i] = Ops(self.xp, state_buffers(state), self.template)
        return ops

    def mul(self, a, b, into: str):
        out = self._to(into)
        return self.xp.multiply(a, b) if out is None else self.xp.multiply(a, b, out=out)

    def add(self, a, b, into: str):
        out = self._to(into)
        return self.xp.add(a, b) if out is None else self.xp.add(a, b, out=out)

    def sub(self, a, b, into: str):
        out = self._to(into)
        return self.xp.subtract(a, b) if out is None else self.xp.subtract(a, b, out=out)

    def div(self, a, b, into: str):
        out = self._to(into)
        return self.xp.divide(a, b) if out is None else self.xp.divide(a, b, out=out)

    def maximum(self, a, b, into: str):
        out = self._to(into)
        return self.xp.maximum(a, b) if out is None else self.xp.maximum(a, b, out=out)

    def sqrt(self, a, into: str):
        out = self._to(into)
        return self.xp.sqrt(a) if out is None else self.xp.sqrt(a, out=out)

    def owned(self, a):
        """``a`` for a caller that may keep it: ``a`` itself on fresh arrays, a copy when
        ``a`` may be a buffer that the next step overwrites."""
        return a if self.buffers is None or a is None else self.xp.asarray(a, copy=True)

    def copy(self, a, into: str):
        """``a`` itself, as ``a * 1.0`` (exact, the sign of a zero included)."""
        return self.mul(a, 1.0, into)

    def ratio(self, num, den, into: str, *, positive_den: bool = False):
        """num / den with 0 / 0 = 0: where ``num`` is a zero (of either sign) the
        result is +0.0, whatever ``den`` (no gradient information, no move).

        Computed as ``(num + 0.0) / den'`` with den' = 1 where num == 0, else
        den: num + 0.0 is num except that -0.0 becomes +0.0. With
        ``positive_den`` (the caller knows den > 0, +inf or NaN only where num
        is NaN) the substitution is skipped: 0 / den is then +0.0 already.
        """
        num = self.add(num, 0.0, into)
        if not positive_den:
            den = self.xp.where(num != 0, den, 1.0)
        return self.div(num, den, into)


def state_buffers(state) -> dict:
    """The arrays of a NamedTuple state by field name (the destinations of :func:`in_place`).

    Each field must own its array: two fields holding the same array would
    overwrite each other in place (an ``init`` gives each its own).
    """
    if not hasattr(state, "_asdict"):
        return {}
    buffers = {k: v for k, v in state._asdict().items() if array_api_compat.is_array_api_obj(v)}
    if len({id(v) for v in buffers.values()}) < len(buffers):
        raise ValueError(f"`state` must hold one array per field for the in-place form; "
                         f"fields {sorted(buffers)} share arrays")
    return buffers


#: numpy's array-API namespace, looked up once (the per-call lookup costs about a
#: microsecond, a visible part of a step on small arrays).
_NUMPY = array_api_compat.array_namespace(np.empty(0))


def as_array(x):
    """An array of an array-API namespace as it is; a numpy array, a list or a number as
    a float64 numpy array."""
    if type(x) is np.ndarray and x.dtype == np.float64:
        return x
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, (np.ndarray, np.generic)):
        return x
    return np.asarray(x, dtype=np.float64)


def namespace(*arrays):
    """The array-API namespace of ``arrays`` (numpy's without a lookup)."""
    if all(type(a) is np.ndarray for a in arrays):
        return _NUMPY
    return array_api_compat.array_namespace(*arrays)


def _shape(x) -> tuple:
    return tuple(x.shape)


def _check(updates, state, params) -> None:
    if params is not None and _shape(params) != _shape(updates):
        raise ValueError(f"`updates` must have the same shape as `params` {_shape(params)}; "
                         f"got shape {_shape(updates)}")
    leaf = next(state_leaves(state), None)
    if leaf is not None and _shape(leaf) != _shape(updates):
        raise ValueError(f"`state` was made by init for params of shape {_shape(leaf)}; "
                         f"got updates of shape {_shape(updates)}")


def state_leaves(state):
    """The arrays of a (nested) state, in order."""
    if array_api_compat.is_array_api_obj(state):
        yield state
    elif isinstance(state, tuple):
        for part in state:
            yield from state_leaves(part)


def transformation(init: Callable, arithmetic: Callable, name: str,
                   hyperparams: Mapping) -> GradientTransformation:
    """A :class:`GradientTransformation` whose ``update`` runs ``arithmetic`` on fresh arrays."""

    def update(updates, state, params=None):
        updates = as_array(updates)
        params = None if params is None else as_array(params)
        _check(updates, state, params)
        return arithmetic(Ops(namespace(updates)), updates, state, params)

    return GradientTransformation(init, update, name, dict(hyperparams), arithmetic)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations one after another (optax's ``chain``).

    The state is the tuple of the parts' states. The name joins the parts'
    names; the hyper-parameters are the parts', a name that two parts share
    prefixed by the part's name (``"trace.decay"``).

    Examples
    --------
    >>> from lossvar import optim
    >>> tx = optim.chain(optim.scale_by_adam(), optim.scale_by_learning_rate(0.1))
    >>> params = [1.0]
    >>> updates, state = tx.update([1.0], tx.init(params), params)
    >>> float(optim.apply_updates(params, updates)[0])  # 1 - 0.1 * 1 / (1 + 1e-8)
    0.900000001
    """
    for i, t in enumerate(transforms):
        if not (hasattr(t, "init") and hasattr(t, "update")):
            raise TypeError(f"`transforms[{i}]` must be a GradientTransformation (init, update); "
                            f"got {t!r}")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def arithmetic(ops, updates, state, params):
        new = []
        for i, (t, s) in enumerate(zip(transforms, state, strict=True)):
            own = getattr(t, "arithmetic", None)
            if own is None:  # a transformation from elsewhere may keep what it is given
                updates, s = t.update(ops.owned(updates), s, ops.owned(params))
            else:
                updates, s = own(ops.child(i, s), updates, s, params)
            new.append(s)
        return updates, tuple(new)

    names = [getattr(t, "name", "transformation") for t in transforms]
    parts = [dict(getattr(t, "hyperparams", {})) for t in transforms]
    shared = Counter(k for part in parts for k in part)
    hyper: dict[str, Any] = {}
    for name, part in zip(names, parts, strict=True):
        hyper |= {k if shared[k] == 1 else f"{name}.{k}": v for k, v in part.items()}
    return transformation(init, arithmetic, f"chain({', '.join(names)})", hyper)


def apply_updates(params, updates):
    """``params + updates`` (optax's ``apply_updates``), a new array."""
    params, updates = as_array(params), as_array(updates)
    if _shape(params) != _shape(updates):
        raise ValueError(f"`updates` must have the same shape as `params` {_shape(params)}; "
                         f"got shape {_shape(updates)}")
    return namespace(params, updates).add(params, updates)


def in_place(tx: GradientTransformation, params) -> Callable:
    """The in-place form of ``tx`` for the parameters ``params``: ``advance(params, grads)``.

    ``advance(params, grads)`` makes the next step, ``params += updates``,
    writing the new parameters into ``params`` and the new state into the
    state's own arrays, with scratch of ``params``' shape made once: what
    :func:`lossvar.run_sgd` runs, step after step, on a stack of replicates.
    It runs ``tx``'s arithmetic, the function its ``update`` runs on fresh
    arrays: the same operations in the same order, so the same bits as ::

        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)

    from ``state = tx.init(params)``. A transformation without an arithmetic
    (built from ``init`` and ``update`` elsewhere) gets its own ``update``,
    with copies of ``grads`` and ``params``, which it may keep. ``grads`` is
    only read, and may be overwritten by the caller after the call.

    Parameters
    ----------
    tx : GradientTransformation
    params : array
        The parameters the steps will update: their shape, dtype and namespace
        make the buffers. Not modified here.

    Returns
    -------
    callable
        ``advance(params, grads) -> None``.
    """
    params = as_array(params)
    xp = namespace(params)
    state = tx.init(params)
    arithmetic = getattr(tx, "arithmetic", None)
    if arithmetic is None:
        def advance_foreign(p, g):
            nonlocal state
            updates, state = tx.update(xp.asarray(g, copy=True), state, xp.asarray(p, copy=True))
            xp.add(p, updates, out=p)
        return advance_foreign
    ops = Ops(xp, state_buffers(state), template=params)

    def advance(p, g):
        nonlocal state
        updates, state = arithmetic(ops, g, state, p)
        xp.add(p, updates, out=p)

    return advance
