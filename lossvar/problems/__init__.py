"""The built-in problems: per-example loss and gradient of each model.

A problem maps a parameter vector ``w`` and data ``(X, y)`` to the per-example
losses l_i(w) and gradients grad l_i(w) whose batch averages are the
stochastic estimators that lossvar studies. Every built-in meets
:class:`lossvar.typing.Problem`, the protocol the engines use and nothing
else (docs/guide/problems.md), so a class of your own that meets it runs in
every engine as they do.

Shape contract, shared by every problem:

- ``w`` has shape ``(..., p)``; leading dimensions index a stack of parameter
  vectors (one per replicate).
- ``X`` has shape ``(..., n, d)`` and ``y`` shape ``(..., n)`` (or ``(n,)``);
  their leading dimensions broadcast against those of ``w``. With ``w`` of
  shape ``(R, p)`` and ``X`` of shape ``(R, B, d)``, replicate r is evaluated
  on its own batch; with ``X`` of shape ``(n, d)`` every replicate sees the
  same data.
- With ``lead = broadcast(w.shape[:-1], X.shape[:-2])``: ``loss`` returns
  ``lead + (n,)``, ``grad`` returns ``lead + (n, p)``, ``mean_loss`` returns
  ``lead`` and ``mean_grad`` returns ``lead + (p,)``.

Each replicate of a stack goes through the same BLAS call as a single
parameter vector would, so a stacked ``w`` gives bit-identical values to a loop
over its rows. There is no implicit intercept: add a column of ones to ``X``
if you want one.
"""

from .linear import LinearRegression, LogisticRegression
from .mlp import MLP
from .quadratic import NoisyQuadratic
from .softmax import SoftmaxRegression

__all__ = ["MLP", "LinearRegression", "LogisticRegression", "NoisyQuadratic", "SoftmaxRegression"]
