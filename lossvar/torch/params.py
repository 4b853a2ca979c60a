"""A module's trainable parameters as one flat vector, and a torch data set as a lossvar Dataset.

The layout (:func:`parameter_layout`): the parameters that require a
gradient, in the order of ``module.named_parameters()`` (shared parameters
once, under their first name), each flattened in C order (row-major, as
``tensor.reshape(-1)``). Parameters that do not require a gradient (a frozen
layer) and buffers (BatchNorm's running statistics, any registered constant)
are not in the vector: :class:`lossvar.torch.TorchProblem` reads them from
the module at each call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lossvar.data import Dataset

__all__ = ["ParameterSlot", "dataset_arrays", "flatten_params", "load_params", "parameter_layout"]


@dataclass(frozen=True)
class ParameterSlot:
    """Where one parameter lies in the flat vector: ``w[slice]`` reshaped to ``shape``."""

    name: str
    shape: tuple[int, ...]
    slice: slice

    @property
    def size(self) -> int:
        return self.slice.stop - self.slice.start


def _module(module) -> torch.nn.Module:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
    return module


def _trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def parameter_layout(module) -> list[ParameterSlot]:
    """The flat vector's layout: one :class:`ParameterSlot` per trainable parameter, in order.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    list of ParameterSlot
        ``(name, shape, slice)`` of each parameter that requires a gradient,
        in the order of ``module.named_parameters()``; the slices tile
        ``range(p)``.

    Examples
    --------
    >>> import torch
    >>> from lossvar.torch import parameter_layout
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    >>> [(s.name, s.shape, s.slice) for s in parameter_layout(net)]  # doctest: +NORMALIZE_WHITESPACE
    [('0.weight', (2, 3), slice(0, 6, None)), ('0.bias', (2,), slice(6, 8, None)),
     ('2.weight', (1, 2), slice(8, 10, None)), ('2.bias', (1,), slice(10, 11, None))]
    """
    layout, start = [], 0
    for name, p in _trainable(_module(module)):
        size = p.numel()
        layout.append(ParameterSlot(name, tuple(p.shape), slice(start, start + size)))
        start += size
    return layout


def flatten_params(module) -> np.ndarray:
    """The module's current trainable parameters as one float64 vector (a copy, on the host).

    The order is :func:`parameter_layout`'s. This is the start ``w0`` of a
    :class:`~lossvar.torch.TorchProblem` made from the module: the module's
    own initialization, drawn by torch when it was built.

    Returns
    -------
    ndarray, shape (p,)
    """
    params = _trainable(_module(module))
    if not params:
        return np.zeros(0)
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for _, p in params])
    return flat.numpy()


def load_params(module, w) -> None:
    """Copy the flat vector ``w`` into the module's trainable parameters, in place.

    The inverse of :func:`flatten_params`: each parameter receives its slice
    of ``w``, reshaped to its shape and converted to its own dtype and
    device (the conversion is what this function is asked to do).

    Parameters
    ----------
    module : torch.nn.Module
    w : array_like or torch.Tensor, shape (p,)
    """
    layout = parameter_layout(module)
    p = layout[-1].slice.stop if layout else 0
    w = torch.as_tensor(np.asarray(w, dtype=np.float64) if not isinstance(w, torch.Tensor) else w)
    if w.shape != (p,):
        raise ValueError(f"`w` must have shape (p,) with p={p}, the number of trainable parameters of "
                         f"`module`; got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("`w` must be finite; got NaN or inf values")
    with torch.no_grad():
        for (_, param), slot in zip(_trainable(module), layout, strict=True):
            param.copy_(w[slot.slice].reshape(slot.shape))


def dataset_arrays(dataset, *, name: str | None = None) -> Dataset:
    """A ``torch.utils.data.Dataset`` of ``(x, y)`` pairs as the :class:`lossvar.Dataset` engines take.

    Every example is read once (``dataset[i]`` for i in ``range(len(dataset))``;
    a ``TensorDataset`` directly from its tensors), moved to the host and
    stacked: ``X`` of shape (n, d) with each input flattened in C order
    (d = the number of elements of one ``x``) as float64, ``y`` of shape (n,)
    as int64 labels when the targets are integers (task
    ``"classification"``) and float64 otherwise (task ``"regression"``).
    Give the problem the inputs' own shape back with
    ``TorchProblem(..., input_shape=tuple(dataset[0][0].shape))``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Finite (with ``len``), each item a pair ``(x, y)`` of tensors or
        numbers; every ``x`` of one shape, every ``y`` a scalar.
    name : str, optional
        Label of the Dataset in tables.

    Returns
    -------
    lossvar.Dataset
    """
    try:
        n = len(dataset)
    except TypeError:
        raise TypeError(f"`dataset` must be a finite torch.utils.data.Dataset with a length; got "
                        f"{type(dataset).__name__}") from None
    if n < 1:
        raise ValueError("`dataset` must hold at least one (x, y) pair; got an empty data set")
    tensors = getattr(dataset, "tensors", None)
    if isinstance(dataset, torch.utils.data.TensorDataset) and tensors is not None and len(tensors) == 2:
        xs, ys = tensors
    else:
        pairs = [dataset[i] for i in range(n)]
        if any(not isinstance(item, (tuple, list)) or len(item) != 2 for item in pairs):
            raise ValueError("`dataset` must yield (x, y) pairs; got an item that is not a pair")
        xs = torch.stack([torch.as_tensor(x).detach().cpu() for x, _ in pairs])
        ys = torch.stack([torch.as_tensor(t).detach().cpu() for _, t in pairs])
    xs, ys = xs.detach().cpu(), ys.detach().cpu()
    if ys.shape != (n,):
        raise ValueError(f"`dataset` must yield scalar targets y (one per example); got targets of "
                         f"shape {tuple(ys.shape[1:])}")
    X = xs.reshape(n, math.prod(xs.shape[1:])).to(torch.float64).numpy()
    if ys.dtype.is_floating_point or ys.dtype.is_complex:
        return Dataset(X, ys.to(torch.float64).numpy(), name=name, task="regression")
    y = ys.to(torch.int64).numpy()
    return Dataset(X, y, name=name, task="classification")
