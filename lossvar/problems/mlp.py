"""The multi-layer perceptron as a problem: backpropagation and Pearlmutter's R-operator in numpy.

A network ``MLP(sizes=(d, h_1, ..., h_m, k))`` maps a row x to its outputs
f(x) through m hidden layers and a linear output layer,

.. math::

    a_0 = x, \\qquad z_j = a_{j-1} W_j + b_j, \\qquad a_j = s(z_j) \\ (j \\le m),
    \\qquad f = z_{m+1},

and meets the shape contract of the built-in problems (:mod:`lossvar.problems`):
``w`` of shape ``(..., p)``, ``X`` of shape ``(..., n, d)``, ``y`` of shape
``(..., n)`` or ``(n,)``, leading dimensions broadcast, and a stack of
parameter vectors gives the same bits as a loop over its rows. The formulas
are in docs/theory.md, section "Neural networks: backpropagation and the
R-operator"; the parameter layout and what is exact on a network in
docs/guide/networks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lossvar._validate import as_choice, as_finite_array, as_float, as_int
from lossvar.streams import generator

from ._base import ScratchPool, buffer
from ._mlp_curvature import Curvature

__all__ = ["MLP"]

ACTIVATIONS = ("tanh", "relu", "softplus")
LOSSES = ("cross_entropy", "squared")

#: Elements of each intermediate (rows, n, width) array of :meth:`MLP.loss` and
#: :meth:`MLP.mean_loss` on a large stack (8 MiB each).
_CHUNK_ELEMENTS = 2**20

@dataclass(frozen=True)
class _Layer:
    """Where one layer's parameters lie in the flat vector: W (fan_in, fan_out), then b."""

    fan_in: int
    fan_out: int
    start: int  # first element of W

    @property
    def bias(self) -> int:
        return self.start + self.fan_in * self.fan_out

    @property
    def stop(self) -> int:
        return self.bias + self.fan_out


@dataclass(frozen=True, init=False)
class MLP(Curvature):
    r"""Multi-layer perceptron with per-example losses, gradients and exact Hessian-vector products.

    Layers :math:`j = 1, \dots, m+1` compute :math:`z_j = a_{j-1} W_j + b_j`
    from :math:`a_0 = x`; hidden layers apply the activation,
    :math:`a_j = s(z_j)`, and the output :math:`f = z_{m+1}` is linear. The
    per-example loss is

    .. math::

        l_i(w) = \log \sum_c e^{f_c(x_i)} - f_{y_i}(x_i) + \tfrac{\lambda}{2}\|w\|^2
        \quad\text{(cross-entropy, } k \ge 2\text{)},
        \qquad
        l_i(w) = \tfrac12 (f(x_i) - y_i)^2 + \tfrac{\lambda}{2}\|w\|^2
        \quad\text{(squared, } k = 1\text{)},

    with a stable log-sum-exp, labels :math:`y_i \in \{0, \dots, k-1\}`
    (integers, or floats with integral values) for the cross-entropy and real
    targets for the squared loss. Gradients come from backpropagation
    (Rumelhart, Hinton & Williams 1986), Hessian-vector products from
    Pearlmutter's R-operator (Pearlmutter 1994); docs/theory.md, section
    "Neural networks: backpropagation and the R-operator".

    **Parameter layout** (stable): one flat float64 vector of length
    :math:`p = \sum_j (\text{fan\_in}_j + 1)\,\text{fan\_out}_j`; for each
    layer in order, its weight matrix :math:`W_j` of shape (fan_in, fan_out)
    in C order, then its bias :math:`b_j` of length fan_out. So layer j's
    block read as a (fan_in + 1, fan_out) matrix is :math:`W_j` with
    :math:`b_j` as its last row. :meth:`unflatten` and :meth:`flatten`
    convert between the vector and the list of ``(W, b)``.

    The losses are not convex in ``w``: :meth:`minimize` returns a local
    minimum.

    Parameters
    ----------
    sizes : sequence of int
        ``(d, h_1, ..., h_m, k)``: the input dimension, the hidden widths
        (m >= 0 hidden layers; m = 0 is a linear model) and the number of
        outputs. At least two entries, each at least 1.
    activation : {"tanh", "relu", "softplus"}, default "tanh"
        Activation of the hidden layers: :math:`\tanh z`, :math:`\max(z, 0)`
        (derivative 0 at 0, as PyTorch) or :math:`\log(1 + e^z)`.
    loss : {"cross_entropy", "squared"}, default "cross_entropy"
        Softmax cross-entropy on k >= 2 outputs, or half the squared error on
        k = 1 output.
    l2 : float, default 0.0
        Ridge strength :math:`\lambda \ge 0` added to every per-example loss.

    Attributes
    ----------
    sizes, activation, l2
        As given (``sizes`` as a tuple of ints).
    objective : str
        The ``loss`` argument (the name ``loss`` is the method that computes
        the losses).
    p : int
        Length of the parameter vector.
    name : str
        Short label for tables, e.g. ``"mlp 64-32-10 tanh"``.

    References
    ----------
    Rumelhart, D. E., Hinton, G. E. & Williams, R. J. (1986). Learning
    representations by back-propagating errors. *Nature* 323, 533-536.

    Pearlmutter, B. A. (1994). Fast exact multiplication by the Hessian.
    *Neural Computation* 6(1), 147-160.

    Examples
    --------
    >>> import numpy as np
    >>> from lossvar import MLP
    >>> net = MLP((4, 8, 3), activation="tanh", l2=1e-2)
    >>> net.n_params(4)
    67
    >>> w = net.init(rng=0)
    >>> X, y = np.ones((5, 4)), np.array([0, 1, 2, 0, 1])
    >>> net.grad(w, X, y).shape
    (5, 67)
    """

    sizes: tuple[int, ...]
    activation: str
    objective: str
    l2: float
    _layers: tuple[_Layer, ...] = field(repr=False, compare=False)
    _pool: ScratchPool = field(repr=False, compare=False)

    def __init__(self, sizes, activation: str = "tanh", loss: str = "cross_entropy",
                 l2: float = 0.0):
        try:
            entries = tuple(sizes)
        except TypeError:
            raise TypeError(f"`sizes` must be a sequence of integers (d, h_1, ..., k); "
                            f"got {sizes!r}") from None
        if len(entries) < 2:
            raise ValueError(f"`sizes` must have at least two entries (d, ..., k); got {sizes!r}")
        for s in entries:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError(f"`sizes` must hold integers >= 1; got {sizes!r}")
        entries = tuple(int(s) for s in entries)
        activation = as_choice(activation, "activation", ACTIVATIONS)
        loss = as_choice(loss, "loss", LOSSES)
        k = entries[-1]
        if loss == "cross_entropy" and k < 2:
            raise ValueError(f"`sizes` must end with k >= 2 outputs for loss='cross_entropy'; "
                             f"got k={k} in {entries}")
        if loss == "squared" and k != 1:
            raise ValueError(f"`sizes` must end with k = 1 output for loss='squared'; "
                             f"got k={k} in {entries}")
        layers, start = [], 0
        for fan_in, fan_out in zip(entries[:-1], entries[1:], strict=True):
            layers.append(_Layer(fan_in, fan_out, start))
            start = layers[-1].stop
        for name, value in (("sizes", entries), ("activation", activation), ("objective", loss),
                            ("l2", as_float(l2, "l2", low=0.0)), ("_layers", tuple(layers)),
                            ("_pool", ScratchPool())):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"loss={self.objective!r}, l2={self.l2!r})")

    def __reduce__(self):
        # The per-thread scratch stays behind: a worker makes its own.
        return (type(self), (self.sizes, self.activation, self.objective, self.l2))

    @property
    def name(self) -> str:
        """Short label for tables: ``"mlp 64-32-10 tanh"`` (``" squared"`` appended for that loss)."""
        label = f"mlp {'-'.join(map(str, self.sizes))} {self.activation}"
        return label if self.objective == "cross_entropy" else label + " squared"

    # -- layout ------------------------------------------------------------------------

    @property
    def p(self) -> int:
        """Length of the parameter vector."""
        return self._layers[-1].stop

    def n_params(self, d: int) -> int:
        """Length p of the parameter vector; ``d`` must be ``sizes[0]``."""
        d = as_int(d, "d", low=1)
        if d != self.sizes[0]:
            raise ValueError(f"`d` must be {self.sizes[0]}, the input width sizes[0] of {self!r}; "
                             f"got {d}")
        return self.p

    def check_params(self, w, X) -> None:
        """Raise ValueError unless ``X`` has shape (..., n, sizes[0]) and ``w`` shape (..., p)."""
        w_shape, X_shape = np.shape(w), np.shape(X)
        if len(X_shape) < 2:
            raise ValueError(f"`X` must have shape (..., n, d); got an array of shape {X_shape}")
        if X_shape[-1] != self.sizes[0]:
            raise ValueError(f"`X` must have d={self.sizes[0]} columns (sizes[0]) for {self!r}; "
                             f"got {X_shape[-1]}")
        if len(w_shape) < 1 or w_shape[-1] != self.p:
            got = f"length {w_shape[-1]}" if w_shape else "a scalar"
            raise ValueError(f"`w` must have length p={self.p} for {self!r}; got {got}")

    def unflatten(self, w) -> list[tuple[np.ndarray, np.ndarray]]:
        """The list of ``(W, b)`` of each layer, as views of ``w`` where it is contiguous.

        ``w`` of shape (..., p) gives ``W`` of shape (..., fan_in, fan_out) and
        ``b`` of shape (..., fan_out).
        """
        w = np.asarray(w)
        if w.ndim < 1 or w.shape[-1] != self.p:
            got = f"length {w.shape[-1]}" if w.ndim else "a scalar"
            raise ValueError(f"`w` must have length p={self.p} for {self!r}; got {got}")
        lead = w.shape[:-1]
        return [(w[..., L.start:L.bias].reshape(lead + (L.fan_in, L.fan_out)), w[..., L.bias:L.stop])
                for L in self._layers]

    def flatten(self, layers) -> np.ndarray:
        """The flat parameter vector (..., p) of a list of ``(W, b)``, the inverse of :meth:`unflatten`."""
        layers = list(layers)
        if len(layers) != len(self._layers):
            raise ValueError(f"`layers` must hold {len(self._layers)} (W, b) pairs for {self!r}; "
                             f"got {len(layers)}")
        parts = []
        for j, ((W, b), L) in enumerate(zip(layers, self._layers, strict=True)):
            W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
            if W.shape[-2:] != (L.fan_in, L.fan_out) or b.shape[-1:] != (L.fan_out,):
                raise ValueError(f"`layers[{j}]` must be (W, b) with W of shape (..., {L.fan_in}, "
                                 f"{L.fan_out}) and b of shape (..., {L.fan_out}); got shapes "
                                 f"{W.shape} and {b.shape}")
            parts += [W.reshape(W.shape[:-2] + (-1,)), b]
        lead = np.broadcast_shapes(*(a.shape[:-1] for a in parts))
        return np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]) for a in parts], axis=-1)

    def init(self, rng=None, size=None) -> np.ndarray:
        r"""A random start: Glorot uniform (tanh, softplus) or He normal (relu) weights, zero biases.

        Each weight of layer j is drawn independently,

        .. math::

            W_j \sim U\Bigl(-\sqrt{\tfrac{6}{\text{fan\_in} + \text{fan\_out}}},
            \sqrt{\tfrac{6}{\text{fan\_in} + \text{fan\_out}}}\Bigr)
            \ \text{(variance } \tfrac{2}{\text{fan\_in} + \text{fan\_out}}\text{)},
            \qquad
            W_j \sim N\Bigl(0, \tfrac{2}{\text{fan\_in}}\Bigr)\ \text{(relu)},

        the output layer included: Keras's ``glorot_uniform`` (Glorot & Bengio
        2010) and PyTorch's ``kaiming_normal_`` with ``mode="fan_in"`` (He et
        al. 2015; untruncated, unlike Keras's ``he_normal``).

        Parameters
        ----------
        rng : None, int, SeedSequence or Generator
            SPEC 7, as everywhere in lossvar (:func:`lossvar.streams.generator`).
        size : int, optional
            Number of independent starts; None for one.

        Returns
        -------
        ndarray, shape (p,) or (size, p)
            Layer by layer, the weights are drawn as one array of shape
            ``(size, fan_in, fan_out)`` (or ``(fan_in, fan_out)``).

        References
        ----------
        Glorot, X. & Bengio, Y. (2010). Understanding the difficulty of
        training deep feedforward neural networks. *AISTATS 2010*, PMLR 9.

        He, K., Zhang, X., Ren, S. & Sun, J. (2015). Delving deep into
        rectifiers. *ICCV 2015*.
        """
        lead = () if size is None else (as_int(size, "size", low=1),)
        gen = generator(rng)
        w = np.zeros(lead + (self.p,))
        for (W, _), L in zip(self.unflatten(w), self._layers, strict=True):
            if self.activation == "relu":
                W[...] = gen.normal(0.0, math.sqrt(2.0 / L.fan_in), W.shape)
            else:
                limit = math.sqrt(6.0 / (L.fan_in + L.fan_out))
                W[...] = gen.uniform(-limit, limit, W.shape)
        return w

    def weight_variances(self) -> list[float]:
        """The variance of one weight of each layer under :meth:`init` (biases are zero)."""
        if self.activation == "relu":
            return [2.0 / L.fan_in for L in self._layers]
        return [2.0 / (L.fan_in + L.fan_out) for L in self._layers]

    # -- inputs ------------------------------------------------------------------------

    def _targets(self, y, n: int, *, check_finite: bool = True) -> np.ndarray:
        """Labels as intp (cross-entropy) or targets as float64 (squared), shape (..., n)."""
        if self.objective == "squared":
            y = as_finite_array(y, "y") if check_finite else np.asarray(y, dtype=np.float64)
        else:
            y = np.asarray(y)
        if y.shape[-1:] != (n,):
            raise ValueError(f"`y` must have shape (..., n) with n={n}, one target per row of `X`; "
                             f"got an array of shape {y.shape}")
        if self.objective == "squared" or y.size == 0:
            return y
        k = self.sizes[-1]
        if y.dtype.kind in "iu":
            if y.min() >= 0 and y.max() < k:
                return y.astype(np.intp, copy=False)
            bad = (y < 0) | (y >= k)
        else:
            values = np.asarray(y, dtype=np.float64)
            # Checked before the cast, which is undefined for NaN and huge values.
            bad = ~((values >= 0) & (values < k) & (values == np.floor(values)))
            if not bad.any():
                return values.astype(np.intp)
        raise ValueError(f"`y` must hold integer class labels in 0..{k - 1} for {self!r}; "
                         f"got {y[bad].flat[0].item()!r}")

    def _inputs(self, w, X, y, *, check_finite: bool = True):
        if check_finite:
            w, X = as_finite_array(w, "w"), as_finite_array(X, "X")
        else:
            w, X = np.asarray(w, dtype=np.float64), np.asarray(X, dtype=np.float64)
        self.check_params(w, X)
        y = self._targets(y, X.shape[-2], check_finite=check_finite)
        # Contiguous operands: each matrix of a stack goes to the same BLAS call as alone.
        return np.ascontiguousarray(w), np.ascontiguousarray(X), y

    def _lead(self, w, X, y) -> tuple[int, ...]:
        return np.broadcast_shapes(w.shape[:-1], X.shape[:-2], y.shape[:-1])

    # -- per-thread scratch --------------------------------------------------------------

    def _scratch(self, key) -> dict:
        """This thread's buffers for one input shape (made when first asked)."""
        return self._pool.get(key)

    def scratch_nbytes(self) -> int:
        """Bytes of scratch that the calling thread keeps for this network (:meth:`mean_grad`)."""
        return self._pool.nbytes()

    # -- forward and backward ------------------------------------------------------------

    def _activate(self, z, out):
        if self.activation == "tanh":
            return np.tanh(z, out=out)
        if self.activation == "relu":
            return np.maximum(z, 0.0, out=out)
        return np.logaddexp(0.0, z, out=out)

    def _times_derivative(self, e, a, tmp):
        """e * s'(z) in place in ``e``, from a = s(z) alone (``tmp``: scratch of e's shape).

        tanh' = 1 - a^2; relu' = 1[a > 0] (0 at 0, as PyTorch); softplus' =
        sigmoid(z) = 1 - e^{-a}, computed as -expm1(-a) to keep its relative
        precision where a is small.
        """
        if self.activation == "tanh":
            np.multiply(a, a, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
        elif self.activation == "relu":
            np.greater(a, 0.0, out=tmp, casting="unsafe")
        else:
            np.negative(a, out=tmp)
            np.expm1(tmp, out=tmp)
            np.negative(tmp, out=tmp)
        return np.multiply(e, tmp, out=e)

    def _derivatives(self, a):
        """s'(z) and s''(z) from a = s(z): tanh'' = -2 a (1 - a^2), relu'' = 0,
        softplus'' = sigmoid (1 - sigmoid)."""
        if self.activation == "tanh":
            d1 = 1.0 - a * a
            return d1, -2.0 * a * d1
        if self.activation == "relu":
            return (a > 0).astype(np.float64), None
        d1 = -np.expm1(-a)
        return d1, d1 * (1.0 - d1)

    def _forward(self, w, X, lead, buffers=None):
        """Inputs a_0..a_m of every layer and the outputs f, shape lead + (n, k)."""
        n = X.shape[-2]
        acts = [X]
        a = X
        for j, (W, b) in enumerate(self.unflatten(w)):
            z = buffer(buffers, ("z", j), lead + (n, W.shape[-1]))
            np.matmul(a, W, out=z)
            np.add(z, b[..., None, :], out=z)
            if j == len(self._layers) - 1:
                return acts, z
            a = self._activate(z, z)  # z is not needed again: s' and s'' come from a
            acts.append(a)
        raise AssertionError("unreachable: an MLP has at least one layer")

    def _output_loss(self, f, y):
        """Per-example loss of the outputs f (..., n, k) against y, without the ridge term."""
        if self.objective == "squared":
            return 0.5 * np.square(f[..., 0] - y)
        m = f.max(axis=-1)
        s = np.exp(f - m[..., None]).sum(axis=-1)
        fy = np.take_along_axis(f, np.broadcast_to(y, f.shape[:-1])[..., None], axis=-1)[..., 0]
        return m + np.log(s) - fy

    def _output_delta(self, f, y, scale, buffers=None):
        """scale * dl/df in place in f: softmax(f) - e_y (cross-entropy) or f - y (squared)."""
        if self.objective == "squared":
            np.subtract(f[..., 0], y, out=f[..., 0])
            return np.multiply(f, scale, out=f)
        rows = f.shape[:-1]
        m = buffer(buffers, "m", rows)
        np.max(f, axis=-1, out=m)
        np.subtract(f, m[..., None], out=f)
        np.exp(f, out=f)
        np.sum(f, axis=-1, out=m)
        np.divide(scale, m, out=m)
        np.multiply(f, m[..., None], out=f)
        flat = f.reshape(-1, f.shape[-1])
        index = None if buffers is None else buffers.get("rows")
        if index is None:
            index = np.arange(flat.shape[0])
            if buffers is not None:
                buffers["rows"] = index
        flat[index, np.broadcast_to(y, rows).reshape(-1)] -= scale
        return f

    def _backward(self, w, acts, delta, lead, out, *, per_example, buffers=None):
        """Write the gradient blocks of every layer into ``out`` from the output delta.

        ``per_example``: ``out`` has shape lead + (n, p) and gets the outer
        products a_{j-1} delta_j^T row by row; else shape lead + (p,) and gets
        a_{j-1}^T delta_j (delta already scaled by 1/n).
        """
        n = delta.shape[-2]
        layers = self.unflatten(w)
        blocks = self.unflatten(out)
        for j in range(len(layers) - 1, -1, -1):
            a = acts[j]
            gW, gb = blocks[j]
            if per_example:
                np.multiply(a[..., :, :, None], delta[..., :, None, :], out=gW)
                gb[...] = delta
            else:
                np.matmul(np.swapaxes(a, -1, -2), delta, out=gW)
                np.matmul(self._ones(buffers, n), delta, out=gb)
            if j == 0:
                return out
            W = layers[j][0]
            e = buffer(buffers, ("e", j - 1), lead + (n, W.shape[-2]))
            np.matmul(delta, np.swapaxes(W, -1, -2), out=e)
            delta = self._times_derivative(e, a, buffer(buffers, ("tmp", j - 1), e.shape))
        return out

    @staticmethod
    def _ones(buffers, n):
        ones = None if buffers is None else buffers.get("ones")
        if ones is None:
            ones = np.ones(n)
            if buffers is not None:
                buffers["ones"] = ones
        return ones

    # -- the Problem protocol ------------------------------------------------------------

    def loss(self, w, X, y) -> np.ndarray:
        """Per-example losses l_i(w), shape lead + (n,), the ridge term included."""
        w, X, y = self._inputs(w, X, y)
        lead = self._lead(w, X, y)
        out = np.empty(lead + (X.shape[-2],))
        for part, (wc, Xc, yc) in self._chunks(w, X, y, lead):
            _, f = self._forward(wc, Xc, out[part].shape[:-1])
            out[part] = self._output_loss(f, yc)
        if self.l2:
            out += (0.5 * self.l2 * np.sum(w * w, axis=-1))[..., None]
        return out

    def mean_loss(self, w, X, y) -> np.ndarray:
        """Mean of the per-example losses over the rows of ``X``, shape lead.

        A large stack (say every replicate of an ensemble on the full data) is
        evaluated by chunks of its first leading axis, so that each
        intermediate array stays near 8 MiB; every replicate goes through the
        same operations as alone, so the bits do not depend on the chunks.
        """
        w, X, y = self._inputs(w, X, y)
        lead = self._lead(w, X, y)
        out = np.empty(lead)
        for part, (wc, Xc, yc) in self._chunks(w, X, y, lead):
            _, f = self._forward(wc, Xc, out[part].shape)
            out[part] = np.mean(self._output_loss(f, yc), axis=-1)
        if self.l2:
            out += 0.5 * self.l2 * np.sum(w * w, axis=-1)
        return out

    def _chunks(self, w, X, y, lead):
        """``(index into the result, (w, X, y) of that part))`` by chunks of lead's first axis."""
        if not lead:
            yield (), (w, X, y)
            return
        per_row = math.prod(lead[1:]) * X.shape[-2] * max(self.sizes[1:])
        rows = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
        for r0 in range(0, lead[0], rows):
            part = slice(r0, min(r0 + rows, lead[0]))
            # Arrays whose leading dims are shorter than lead's, or 1 there, broadcast whole.
            cut = [a[part] if a.ndim - core == len(lead) and a.shape[0] != 1 else a
                   for a, core in ((w, 1), (X, 2), (y, 1))]
            yield part, tuple(cut)

    def grad(self, w, X, y) -> np.ndarray:
        """Per-example gradients by backpropagation, shape lead + (n, p)."""
        w, X, y = self._inputs(w, X, y)
        lead = self._lead(w, X, y)
        acts, f = self._forward(w, X, lead)
        delta = self._output_delta(f, y, 1.0)
        out = np.empty(lead + (X.shape[-2], self.p))
        self._backward(w, acts, delta, lead, out, per_example=True)
        if self.l2:
            out += self.l2 * w[..., None, :]
        return out

    def mean_grad(self, w, X, y, *, out=None) -> np.ndarray:
        r"""Gradient of the mean loss over the rows of ``X``, shape lead + (p,).

        .. math::

            \nabla_{W_j} \bar l = \frac1n \sum_i a_{i,j-1}^\top \delta_{ij} + \lambda W_j,
            \qquad \nabla_{b_j} \bar l = \frac1n \sum_i \delta_{ij} + \lambda b_j,

        one matrix product per layer and parameter vector, without the
        per-example (n, p) array.

        Parameters
        ----------
        w : array_like, shape (..., p)
        X : array_like, shape (..., n, d)
        y : array_like, shape (..., n) or (n,)
        out : ndarray, optional
            A C-contiguous float64 array of the result's shape: the gradient is
            written into it and ``out`` is returned (the hot path of SGD
            ensembles: the intermediate arrays are kept per thread and input
            shape, see :meth:`scratch_nbytes`). With ``out`` the data are not
            checked for NaN or inf (engines check them once); the bits are the
            same with and without ``out``.
        """
        w, X, y = self._inputs(w, X, y, check_finite=out is None)
        lead = self._lead(w, X, y)
        n = X.shape[-2]
        if n < 1:
            raise ValueError("`X` must have at least one row for a mean gradient; got 0")
        shape = lead + (self.p,)
        if out is None:
            out = np.empty(shape)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == shape
                  and out.flags.c_contiguous and out.flags.writeable):
            got = (f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray)
                   else type(out).__name__)
            raise ValueError(f"`out` must be a writeable C-contiguous float64 array of shape {shape}; "
                             f"got a {got}")
        buffers = self._scratch((lead, n))
        acts, f = self._forward(w, X, lead, buffers)
        delta = self._output_delta(f, y, 1.0 / n, buffers)
        self._backward(w, acts, delta, lead, out, per_example=False, buffers=buffers)
        if self.l2:
            ridge = buffer(buffers, "ridge", shape)
            np.multiply(w, self.l2, out=ridge)
            np.add(out, ridge, out=out)
        return out
