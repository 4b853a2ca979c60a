r"""A PyTorch model as a lossvar problem: per-example losses, gradients and Hessian-vector products.

:class:`TorchProblem` wraps any ``torch.nn.Module`` and a per-example loss in
the Problem protocol (:class:`lossvar.typing.Problem`): ``loss``, ``grad``,
``mean_loss``, ``mean_grad``, ``hvp`` and ``hessian`` take numpy arrays (or
tensors already on the model's device in its dtype) and return float64
numpy arrays, so every engine that takes a problem takes a torch model. The
work runs through ``torch.func`` on the module's device, block by block of
the data: per-example gradients by ``vmap`` over the examples of ``grad`` of
one example's loss, losses and mean gradients on the whole block at once
(``functional_call``, ``grad``), Hessian-vector products by
forward-over-reverse (``jvp`` of ``grad``; Pearlmutter 1994). Only each
block's results come back to the host.

References
----------
B. A. Pearlmutter (1994), "Fast exact multiplication by the Hessian",
Neural Computation 6(1):147-160.
H. He and R. Zou (2021), "functorch: JAX-like composable function transforms
for PyTorch" (now torch.func), and its tutorial "Per-sample gradients".
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import functional_call, grad, jvp, vmap

from lossvar._validate import as_choice, as_int

from . import _inputs
from ._forward import load_forward_mode
from .params import ParameterSlot, parameter_layout

__all__ = ["TorchProblem"]


def _same_place(out: torch.Tensor, part: torch.Tensor) -> bool:
    """Whether ``torch.cat(..., out=out)`` can take ``part``: same device and dtype (a host
    ``out`` of a GPU's result, or a float64 one of float32, is filled by ``copy_``)."""
    return out.device == part.device and out.dtype == part.dtype


#: Per-example gradient numbers per block by default (32 MiB in float64): the
#: examples of a block times the replicates of a stack times p stay below it.
_BLOCK_ELEMENTS = 2**22

#: Examples times replicates per block by default where no per-example gradient is kept
#: (losses, mean losses, mean gradients): memory is then the module's activations.
_BLOCK_ROWS = 2**16

#: (vector, example) pairs per pass of :meth:`TorchProblem.hvp` by default:
#: the vectors of a chunk times the examples of a block stay below it.
_HVP_PAIRS = 2**16

STACKS = ("vmap", "loop")


class TorchProblem:
    r"""A ``torch.nn.Module`` and a per-example loss as a lossvar problem.

    The loss of example i at the flat parameter vector w is

    .. math::

        l_i(w) = \texttt{loss\_fn}\bigl(\texttt{module}_w(x_i^{(1)}),\ y_i^{(1)}\bigr),

    the module evaluated on the batch of one example :math:`x_i^{(1)}` (shape
    ``(1,) + input_shape``) with its parameters read from w, and ``loss_fn``
    on that output and the one target. ``loss_fn`` must return one loss per
    example (``reduction="none"``): ``torch.nn.CrossEntropyLoss(reduction="none")``,
    or any function ``(output, target) -> tensor of shape (batch,)``. Its
    gradient :math:`\nabla l_i(w)` comes from ``torch.func.grad`` under
    ``vmap`` (each example alone), the losses and the gradient of their mean
    from the module on a whole block of examples at once (faster; the same
    numbers to rounding, which a probe at the first call checks: see
    ``module`` below), and the Hessian of the mean loss times v from
    ``torch.func.jvp`` of that gradient.

    **Parameter layout.** w is one flat vector of the parameters that require
    a gradient, in the order of ``module.named_parameters()``, each flattened
    in C order: :func:`lossvar.torch.parameter_layout` gives the
    ``(name, shape, slice)`` of each, :func:`lossvar.torch.flatten_params`
    the module's current values (the natural start ``w0``: the module's own
    initialization) and :func:`lossvar.torch.load_params` writes a vector
    back into the module. Buffers and frozen parameters are read from the
    module at each call.

    **Shapes** follow the protocol: ``w`` (..., p), ``X`` (..., n, d),
    ``y`` (..., n) or (n,), leading dimensions broadcast; each row of ``X``
    is reshaped to ``input_shape`` before the module sees it (d must be its
    number of elements). A stack ``w`` (R, p) with ``X`` (R, B, d) evaluates
    replicate r on its own batch, through ``vmap`` over the replicate axis
    (``stack="vmap"``) or one replicate after the other (``stack="loop"``).

    **Data and devices.** numpy arrays are host data: they are copied to the
    module's device in ``dtype`` (integer targets as ``torch.long``, float
    targets in ``dtype`` unless ``target_dtype`` says otherwise). Tensors are
    used as they are: they must already be on the module's device, inputs in
    ``dtype`` (nothing is converted silently; the error says what to change).
    Results are float64 numpy arrays, or, for :meth:`mean_grad`,
    :meth:`mean_loss` and :meth:`grad`, written into an ``out`` tensor on the
    device, where they stay. :meth:`device_arrays` converts once what an
    engine keeps on the device: :func:`lossvar.run_sgd` trains its replicates
    there (docs/guide/pytorch.md, "R replicate trainings"). The work runs in
    blocks of examples (``block_size``), so memory stays bounded whatever n
    is.

    **Bits.** On a CPU in float64 the same call gives the same bits run to
    run. A stack with ``stack="loop"`` gives the same bits as a loop over its
    rows. With ``stack="vmap"`` torch's batched kernels may round a replicate
    differently from the same replicate alone (for example, on CPU torch 2.13
    computes a batch of one matrix product by ``mm`` and a batch of several
    by a batched kernel that can differ in the last bit): a stack then
    agrees with a loop to rounding, and a replicate's bits depend on the shape
    of its stack (in :func:`lossvar.run_sgd`, its block of replicates, fixed by
    the number of replicates alone). On a GPU results depend on the device.

    Parameters
    ----------
    module : torch.nn.Module
        The model. Its output for one example must not depend on the other
        examples of the batch, nor be random: BatchNorm and Dropout must be in
        eval mode (``module.eval()``), which is checked, and a numerical
        probe compares a batch's losses with the same examples alone.
    loss_fn : callable
        ``loss_fn(output, target) -> (batch,)``, one loss per example.
    dtype : torch.dtype, default torch.float64
        The floating dtype the module's parameters and floating buffers hold
        and the work runs in.
    device : torch.device or str, optional
        Where the module is; by default the device of its parameters. Given,
        it must be that device (move the module with ``module.to(device)``).
    input_shape : tuple of int, optional
        Shape of one example's input; None passes each row of ``X`` (d,) as
        it is.
    target_dtype : torch.dtype, optional
        dtype of the targets given to ``loss_fn``: by default ``torch.long``
        for integer ``y`` and ``dtype`` for float ``y``. Pass ``torch.long``
        for class labels that arrive as floats (run_sgd passes labels as
        float64): they must then be integers.
    block_size : int, optional
        Examples per block. By default, for :meth:`grad`, about 2**22 / (p
        times the replicates of a stack), so that a block's per-example
        gradients hold 32 MiB in float64; for the losses and mean gradients,
        2**16 / replicates, so that a block's activations stay bounded.
        Results depend on it only through rounding (sums of blocks).
    stack : {"vmap", "loop"}, default "vmap"
        How a stack of parameter vectors is evaluated (see Bits above).

    Attributes
    ----------
    module, loss_fn, dtype, device, input_shape, target_dtype, block_size, stack
    layout : list of ParameterSlot
    p : int
        Length of the parameter vector.
    name : str
        ``"torch <module class>"``, for tables.
    l2 : float
        0.0: a penalty belongs in ``loss_fn`` (or in the optimizer).

    Examples
    --------
    >>> import numpy as np, torch, lossvar
    >>> from lossvar.torch import TorchProblem, flatten_params
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> problem = TorchProblem(net, torch.nn.CrossEntropyLoss(reduction="none"))
    >>> X, y = np.random.default_rng(0).normal(size=(50, 4)), np.arange(50) % 3
    >>> problem.grad(flatten_params(net), X, y).shape
    (50, 67)
    """

    def __init__(self, module, loss_fn, *, dtype: torch.dtype = torch.float64, device=None,
                 input_shape=None, target_dtype: torch.dtype | None = None, block_size: int | None = None,
                 stack: str = "vmap"):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be a callable loss_fn(output, target) -> (batch,); "
                            f"got {loss_fn!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"`dtype` must be a floating torch.dtype such as torch.float64; got {dtype!r}")
        if target_dtype is not None and not isinstance(target_dtype, torch.dtype):
            raise ValueError(f"`target_dtype` must be None or a torch.dtype such as torch.long; "
                             f"got {target_dtype!r}")
        if input_shape is not None:
            try:
                input_shape = tuple(input_shape)
            except TypeError:
                raise TypeError(f"`input_shape` must be a tuple of positive integers; got {input_shape!r}") \
                    from None
            if not input_shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                      for s in input_shape):
                raise ValueError(f"`input_shape` must be a tuple of positive integers; got {input_shape!r}")
            input_shape = tuple(int(s) for s in input_shape)
        self.module, self.loss_fn, self.dtype = module, loss_fn, dtype
        self.input_shape, self.target_dtype = input_shape, target_dtype
        self.block_size = None if block_size is None else as_int(block_size, "block_size", low=1)
        self.stack = as_choice(stack, "stack", STACKS)
        self.layout: list[ParameterSlot] = parameter_layout(module)
        if not self.layout:
            raise ValueError("`module` must have at least one parameter that requires a gradient; got none")
        self.p = self.layout[-1].slice.stop
        self.device = _inputs.module_device(module, dtype, device)
        self._per_batch = _inputs.per_batch_modules(module)
        _inputs.check_modes(self._per_batch)
        self._probed = False
        self.l2 = 0.0

    def __repr__(self) -> str:
        shape = "" if self.input_shape is None else f", input_shape={self.input_shape}"
        return (f"TorchProblem({type(self.module).__name__} with p={self.p}, loss_fn={self.loss_fn!r}, "
                f"dtype={self.dtype}, device={self.device}{shape}, stack={self.stack!r})")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_probed"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._probed = False

    @property
    def name(self) -> str:
        """``"torch <module class>"``, for tables."""
        return f"torch {type(self.module).__name__}"

    def n_params(self, d: int) -> int:
        """Length p of the parameter vector (``d`` must match ``input_shape`` when it is given)."""
        d = as_int(d, "d", low=1)
        if self.input_shape is not None and d != math.prod(self.input_shape):
            raise ValueError(f"`d` must be {math.prod(self.input_shape)}, the size of input_shape="
                             f"{self.input_shape}; got {d}")
        return self.p

    def check_params(self, w, X) -> None:
        """Raise ValueError unless ``w`` has shape (..., p) and ``X`` shape (..., n, d)."""
        w_shape, X_shape = tuple(np.shape(w)), tuple(np.shape(X))
        if len(X_shape) < 2:
            raise ValueError(f"`X` must have shape (..., n, d); got an array of shape {X_shape}")
        if self.input_shape is not None and X_shape[-1] != math.prod(self.input_shape):
            raise ValueError(f"`X` must have d={math.prod(self.input_shape)} columns, the size of "
                             f"input_shape={self.input_shape}; got {X_shape[-1]}")
        if len(w_shape) < 1 or w_shape[-1] != self.p:
            got = f"length {w_shape[-1]}" if w_shape else "a scalar"
            raise ValueError(f"`w` must have length p={self.p}, the number of trainable parameters of "
                             f"the module (see lossvar.torch.parameter_layout); got {got}")

    # -- inputs ---------------------------------------------------------------------------------

    def _inputs(self, w, X, y, *, check_finite: bool = True):
        """(w, X, y) as tensors with one flat leading axis (or none) and their vmap in_dims."""
        _inputs.check_modes(self._per_batch)
        self.check_params(w, X)
        wt = _inputs.as_tensor(w, "w", self.dtype, self.device, check_finite=check_finite)
        Xt = _inputs.as_tensor(X, "X", self.dtype, self.device, check_finite=check_finite)
        yt = _inputs.as_targets(y, Xt.shape[-2], self.dtype, self.target_dtype, self.device)
        lead = torch.broadcast_shapes(wt.shape[:-1], Xt.shape[:-2], yt.shape[:-1])
        if not self._probed and Xt.shape[-2] >= 2:
            params = self._params(wt.reshape(-1, self.p)[0])
            _inputs.probe(lambda x: self._call(params, x), self.loss_fn, Xt.reshape((-1,) + Xt.shape[-2:])[0],
                          yt.reshape(-1, yt.shape[-1])[0], self.dtype)
            self._probed = True
        arrays: list[torch.Tensor] = []
        dims: list[int | None] = []
        for a, core in ((wt, 1), (Xt, 2), (yt, 1)):
            own = a.shape[:a.ndim - core]
            if math.prod(own) == 1:
                arrays.append(a.reshape(a.shape[a.ndim - core:]))
                dims.append(None)
            else:
                if own != lead:
                    a = a.broadcast_to(lead + a.shape[a.ndim - core:])
                arrays.append(a.reshape((-1,) + a.shape[len(lead):]))
                dims.append(0)
        return arrays, dims, tuple(lead)

    # -- the functions of torch.func -------------------------------------------------------------

    def _params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the flat vector (..., p) as the module's parameters, (...) + shape each."""
        lead = w.shape[:-1]
        return {s.name: w[..., s.slice].reshape(lead + s.shape) for s in self.layout}

    def _call(self, params, x):
        """The module on a batch x (b, d) with ``params``; buffers and frozen parameters its own."""
        state = dict(self.module.named_buffers())
        state.update((k, v) for k, v in self.module.named_parameters() if not v.requires_grad)
        state.update(params)
        if self.input_shape is not None:
            x = x.reshape((x.shape[0],) + self.input_shape)
        return functional_call(self.module, state, (x,))

    def _example_loss(self, params, x, t):
        """l_i: the module on the batch of one example, its one loss."""
        return self.loss_fn(self._call(params, x.unsqueeze(0)), t.unsqueeze(0)).reshape(())

    def _losses(self, params, X, y):
        """The losses of a block of examples, the module on the whole block at once."""
        return self.loss_fn(self._call(params, X), y)

    def _grads(self, params, X, y):
        return vmap(grad(self._example_loss), in_dims=(None, 0, 0))(params, X, y)

    def _sum_loss(self, params, X, y, scale):
        return self._losses(params, X, y).sum() * scale

    def _mean_grad_block(self, params, X, y, scale):
        return grad(self._sum_loss)(params, X, y, scale)

    def _stacked(self, fn, dims, extra: int = 0):
        """fn over the replicate axis of (w, X, y) where their dim is 0 (fn itself without one);
        ``extra`` more arguments are passed through to every replicate."""
        if all(d is None for d in dims):
            return fn
        if self.stack == "vmap":
            return vmap(fn, in_dims=tuple(dims) + (None,) * extra)

        def loop(*a):
            r = next(x.shape[0] for x, d in zip(a, dims, strict=False) if d == 0)
            outs = [fn(*[x[i] if d == 0 else x for x, d in zip(a, dims, strict=False)],
                       *a[len(dims):]) for i in range(r)]
            if isinstance(outs[0], dict):
                return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
            return torch.stack(outs)
        return loop

    def _blocks(self, n: int, replicates: int, *, per_example: bool = False):
        """(start, stop) of each block of examples (see ``block_size``)."""
        default = _BLOCK_ELEMENTS // (replicates * self.p) if per_example else _BLOCK_ROWS // replicates
        b = self.block_size or max(1, default)
        if per_example and self.block_size is None:
            # Blocks of equal sizes (a call costs more than its examples): nothing is summed
            # across blocks of per-example gradients, so the bits do not depend on them.
            b = -(-n // -(-n // b))
        for i in range(0, n, b):
            yield i, min(n, i + b)

    @staticmethod
    def _split(arrays, i, j):
        """(w, X, y) with examples i:j of X and y (their example axis is -2 and -1)."""
        wt, Xt, yt = arrays
        return wt, Xt[..., i:j, :], yt[..., i:j]

    # -- the Problem protocol -------------------------------------------------------------------

    def loss(self, w, X, y) -> np.ndarray:
        """Per-example losses l_i(w), shape lead + (n,)."""
        arrays, dims, lead = self._inputs(w, X, y)
        n = arrays[1].shape[-2]
        out = np.empty(lead + (n,))
        view = torch.from_numpy(out.reshape(-1, n))
        fn = self._stacked(lambda w_, X_, y_: self._losses(self._params(w_), X_, y_), dims)
        with torch.no_grad():
            for i, j in self._blocks(n, view.shape[0]):
                view[:, i:j].copy_(fn(*self._split(arrays, i, j)).reshape(-1, j - i))
        _inputs.check_finite(out, "losses")
        return out

    def mean_loss(self, w, X, y, *, out=None) -> np.ndarray:
        """Mean of the per-example losses over the rows of ``X``, shape lead.

        With ``out`` (a writeable C-contiguous float64 array of shape lead, or a
        contiguous tensor of that shape on the module's device in ``dtype``) the
        mean is written into it and ``out`` is returned, and, as in
        :meth:`mean_grad`, nothing is checked for NaN or inf: a diverged row of
        ``w`` gets a NaN or inf mean (what :func:`lossvar.run_sgd` records).
        """
        checked = out is None
        arrays, dims, lead = self._inputs(w, X, y, check_finite=checked)
        n = arrays[1].shape[-2]
        self._need_rows(n)
        if checked:
            out = np.empty(lead)
        view = _inputs.out_tensor(out, lead, self.dtype, self.device).reshape(-1)
        fn = self._stacked(lambda w_, X_, y_: self._losses(self._params(w_), X_, y_).sum(), dims)
        total = None
        with torch.no_grad():
            for i, j in self._blocks(n, math.prod(lead)):
                part = fn(*self._split(arrays, i, j))
                total = part if total is None else total + part
        assert total is not None
        view.copy_((total / n).reshape(-1))
        if checked:
            _inputs.check_finite(out, "mean loss")
        return out

    def grad(self, w, X, y, *, out=None) -> np.ndarray:
        """Per-example gradients by ``torch.func.grad`` under ``vmap``, shape lead + (n, p).

        With ``out`` (a writeable C-contiguous float64 array of that shape, or a
        contiguous tensor of that shape on the module's device in ``dtype``) the
        gradients are written into it, block by block, and ``out`` is returned:
        a caller that asks for the gradients of many batches reuses one buffer
        instead of a new (n, p) array each time. As in :meth:`mean_grad`, with
        ``out`` neither the inputs nor the result are checked for NaN or inf
        (the caller checks); without, they are refused.
        """
        checked = out is None
        arrays, dims, lead = self._inputs(w, X, y, check_finite=checked)
        n = arrays[1].shape[-2]
        shape = lead + (n, self.p)
        if checked:
            out = np.empty(shape)
        view = _inputs.out_tensor(out, shape, self.dtype, self.device).reshape(-1, n, self.p)
        fn = self._stacked(lambda w_, X_, y_: self._grads(self._params(w_), X_, y_), dims)
        for i, j in self._blocks(n, view.shape[0], per_example=True):
            block = fn(*self._split(arrays, i, j))
            parts = [block[s.name].reshape(view.shape[0], j - i, s.size) for s in self.layout]
            target = view[:, i:j]
            if not _same_place(target, parts[0]):  # a host buffer of a GPU's gradients
                target.copy_(torch.cat(parts, dim=2))  # one transfer a block
            elif target.is_contiguous():  # one pass, into the buffer's rows
                torch.cat(parts, dim=2, out=target)
            else:
                for s, part in zip(self.layout, parts, strict=True):
                    target[:, :, s.slice].copy_(part)
            # One read of each block: the sum is NaN or inf when an entry is (or, rarely, on overflow).
            if checked and not bool(torch.isfinite(torch.stack([g.sum() for g in parts]).sum())):
                _inputs.check_finite(out[..., :j, :], "per-example gradients")
        return out

    def mean_grad(self, w, X, y, *, out=None) -> np.ndarray:
        r"""Gradient of the mean loss over the rows of ``X``, shape lead + (p,).

        .. math:: \nabla \bar l(w) = \frac1n \sum_{i=1}^n \nabla l_i(w),

        one reverse pass per block of examples (no per-example gradients).

        Parameters
        ----------
        w, X, y
            As in :meth:`grad`.
        out : ndarray or torch.Tensor, optional
            A writeable C-contiguous float64 array of the result's shape, or a
            contiguous tensor of that shape on the module's device in ``dtype``
            (the gradient then stays on the device): the gradient is written into
            it and ``out`` is returned. With ``out`` neither the inputs nor the
            result are checked for NaN or inf (engines check them once and watch
            for divergence themselves).
        """
        checked = out is None
        arrays, dims, lead = self._inputs(w, X, y, check_finite=checked)
        n = arrays[1].shape[-2]
        self._need_rows(n)
        shape = lead + (self.p,)
        if checked:
            out = np.empty(shape)
        view = _inputs.out_tensor(out, shape, self.dtype, self.device).reshape(-1, self.p)
        fn = self._stacked(lambda w_, X_, y_, scale: self._mean_grad_block(self._params(w_), X_, y_, scale),
                           dims, extra=1)
        total: dict[str, torch.Tensor] | None = None
        for i, j in self._blocks(n, math.prod(lead)):
            part = fn(*self._split(arrays, i, j), 1.0 / n)
            total = part if total is None else {k: total[k] + part[k] for k in total}
        assert total is not None
        flat = [total[s.name].reshape(view.shape[0], s.size) for s in self.layout]
        if _same_place(view, flat[0]):
            torch.cat(flat, dim=1, out=view)
        else:  # a host array of a GPU's gradient (or float64 of float32): one transfer
            view.copy_(torch.cat(flat, dim=1))
        if checked:
            _inputs.check_finite(out, "mean gradient")
        return out

    def device_arrays(self, w, X, y):
        """``(w, X, y)`` as tensors on the module's device, for engines that keep their work there.

        ``w`` (..., p) and ``X`` (..., n, d) in ``dtype``, ``y`` (..., n) as the
        targets ``loss_fn`` gets (integer labels as ``torch.long``): numpy arrays
        are copied there (sharing memory where torch can: a float64 array on the
        CPU), tensors must already be there in that dtype and are used as they
        are; NaN and inf are refused. Any of the three may be None (and is
        returned as None; ``y`` needs ``X``). :func:`lossvar.run_sgd` calls it once
        per block of replicates for their start and the data, then keeps the
        parameters, the optimizer's state and the batches on the device, calling
        :meth:`mean_grad` and :meth:`mean_loss` with these tensors and tensor
        ``out`` arrays.
        """
        wt = None if w is None else _inputs.as_tensor(w, "w", self.dtype, self.device, check_finite=True)
        Xt = yt = None
        if X is not None:
            Xt = _inputs.as_tensor(X, "X", self.dtype, self.device, check_finite=True)
            if Xt.ndim < 2:
                raise ValueError(f"`X` must have shape (..., n, d); got shape {tuple(Xt.shape)}")
        if y is not None:
            if Xt is None:
                raise ValueError("`y` needs `X` (one target per row); got X=None")
            yt = _inputs.as_targets(y, Xt.shape[-2], self.dtype, self.target_dtype, self.device)
        return wt, Xt, yt

    def hvp(self, w, X, y, v) -> np.ndarray:
        r"""Hessian of the mean loss times ``v``, exactly, by forward-over-reverse differentiation.

        .. math:: H v = \frac{d}{d\varepsilon} \nabla \bar l(w + \varepsilon v) \Big|_{\varepsilon = 0},

        ``torch.func.jvp`` of ``torch.func.grad`` of the mean loss (Pearlmutter
        1994), a stack of vectors through ``vmap``, in blocks of examples and
        chunks of vectors (about 2**16 (vector, example) pairs per pass).

        Parameters
        ----------
        w : array_like, shape (p,)
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        v : array_like, shape (p,) or (m, p)

        Returns
        -------
        ndarray, the shape of ``v``
        """
        arrays, n = self._curvature_inputs(w, X, y)
        vt = _inputs.as_tensor(v, "v", self.dtype, self.device, check_finite=True)
        if vt.ndim not in (1, 2) or vt.shape[-1] != self.p:
            raise ValueError(f"`v` must have shape (p,) or (m, p) with p={self.p}; got shape "
                             f"{tuple(vt.shape)}")
        V = vt.reshape(-1, self.p)
        out = np.empty((V.shape[0], self.p))
        self._hvp_into(arrays, n, V, torch.from_numpy(out))
        _inputs.check_finite(out, "Hessian-vector products")
        return out.reshape(tuple(vt.shape))

    def hessian(self, w, X, y) -> np.ndarray:
        r"""Dense Hessian of the mean loss over ``(X, y)`` at ``w``, shape (p, p).

        :meth:`hvp` against the rows of the identity, in chunks, then
        symmetrized, :math:`(H + H^\top)/2`: p Hessian-vector products, meant
        for small models (p of a few thousand).
        """
        arrays, n = self._curvature_inputs(w, X, y)
        out = np.empty((self.p, self.p))
        view = torch.from_numpy(out)
        chunk = max(1, min(self.p, _HVP_PAIRS // n))
        for i in range(0, self.p, chunk):
            j = min(self.p, i + chunk)
            E = torch.zeros((j - i, self.p), dtype=self.dtype, device=self.device)
            E[torch.arange(j - i), torch.arange(i, j)] = 1.0
            self._hvp_into(arrays, n, E, view[i:j])
        out += out.T.copy()
        out *= 0.5
        _inputs.check_finite(out, "Hessian")
        return out

    def _curvature_inputs(self, w, X, y):
        if np.ndim(w) != 1:
            raise ValueError(f"`w` must be one parameter vector of shape (p,); got shape "
                             f"{tuple(np.shape(w))}")
        if np.ndim(X) != 2:
            raise ValueError(f"`X` must have shape (n, d); got shape {tuple(np.shape(X))}")
        arrays, _, _ = self._inputs(w, X, y)
        n = arrays[1].shape[0]
        self._need_rows(n)
        return arrays, n

    def _hvp_into(self, arrays, n, V, out_view) -> None:
        wt, Xt, yt = arrays
        params = self._params(wt)
        b = self.block_size or n
        chunk = max(1, _HVP_PAIRS // min(b, n))

        def product(tangent, Xb, yb):
            def g(q):
                return self._mean_grad_block(q, Xb, yb, 1.0 / n)
            return jvp(g, (params,), (tangent,))[1]

        many = vmap(product, in_dims=(0, None, None))
        load_forward_mode()
        for a in range(0, V.shape[0], chunk):
            c = min(V.shape[0], a + chunk)
            tangents = self._params(V[a:c])
            total = None
            for i in range(0, n, b):
                part = many(tangents, Xt[i:i + b], yt[i:i + b])
                total = part if total is None else {k: total[k] + part[k] for k in total}
            assert total is not None
            for s in self.layout:
                out_view[a:c, s.slice].copy_(total[s.name].reshape(c - a, s.size))

    @staticmethod
    def _need_rows(n: int) -> None:
        if n < 1:
            raise ValueError("`X` must have at least one row for a mean over the examples; got 0")

