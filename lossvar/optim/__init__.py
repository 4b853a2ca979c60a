"""Optimizers in optax's shape: gradient transformations, chains of them, and the lecture's aliases.

A :class:`GradientTransformation` is ``(init, update)``::

    opt = optim.adam(1e-3)                       # = chain(scale_by_adam(), scale_by_learning_rate(1e-3))
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)

Nothing mutates its inputs; :func:`in_place` derives, from the same
definition, the form that overwrites the parameters and the state's arrays
(what :func:`lossvar.run_sgd` runs), with the same bits. The arithmetic is
written against the array API, so it runs on numpy arrays and PyTorch tensors
alike. See docs/guide/optimizers.md.
"""

from .aliases import adagrad, adam, adamw, amsgrad, momentum, nesterov, rmsprop, sgd
from .base import EmptyState, GradientTransformation, apply_updates, chain, in_place
from .transforms import (
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    ScaleByRssState,
    TraceState,
    add_decayed_weights,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "ScaleByAdamState",
    "ScaleByLearningRateState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "TraceState",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "apply_updates",
    "chain",
    "in_place",
    "momentum",
    "nesterov",
    "rmsprop",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "sgd",
    "trace",
]
