r"""Gradient noise: exact statistics, a Monte Carlo, two-batch estimates, adaptive-batch tests, a monitor.

Notation (docs/theory.md, section 10): the per-example gradients
:math:`g_i(w)`, :math:`i = 1..N`, their mean :math:`G`, their covariance

.. math::

    \Sigma = \frac{1}{N - \mathrm{ddof}} \sum_{i=1}^N (g_i - G)(g_i - G)^\top

with the *population* normalization ``ddof = 0`` (divide by N) unless stated
otherwise, and :math:`H` the Hessian of the mean loss. A batch mean
:math:`G_B` of B examples then has
:math:`E\|G_B\|^2 = \|G\|^2 + c_B \operatorname{tr}\Sigma` with
:math:`c_B = 1/B` for independent draws and :math:`(N - B)/(B (N - 1))`
without replacement.

The modules, one idea each (every public name is also importable from here
and from the top level, ``lossvar``):

- :mod:`lossvar.noise.exact`: :class:`lossvar.GradientNoiseResult` and
  :func:`lossvar.gradient_noise`, the exact noise statistics of a data set (simple
  noise scale, noise scale with curvature, GSNR);
- :mod:`lossvar.noise.montecarlo`: :func:`lossvar.gradient_variance`, the Monte
  Carlo of :math:`E\|g_B - G\|^2` against B beside its exact value;
- :mod:`lossvar.noise.two_batch`: :func:`lossvar.two_batch_estimate` and
  :func:`lossvar.two_batch_estimate_from_callable`, the unbiased estimates from
  batch means at two sizes (McCandlish et al. 2018, appendix A.1);
- :mod:`lossvar.noise.adaptive`: :func:`lossvar.norm_test`,
  :func:`lossvar.inner_product_test`, :func:`lossvar.orthogonality_test` (Byrd et al. 2012;
  Bollapragada et al. 2018);
- :mod:`lossvar.noise.monitor`: :class:`lossvar.GradientNoiseMonitor`, the
  two-batch estimate online, during training.

Every function that takes a problem uses only the Problem protocol
(:class:`lossvar.typing.Problem`).

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162.
"""

from .adaptive import inner_product_test, norm_test, orthogonality_test
from .exact import GradientNoiseResult, gradient_noise
from .monitor import GradientNoiseMonitor
from .montecarlo import GRADIENT_VARIANCE_COLUMNS, GradientVarianceResult, gradient_variance
from .two_batch import (
    NegativeEstimateWarning,
    TwoBatchDesign,
    TwoBatchResult,
    two_batch_estimate,
    two_batch_estimate_from_callable,
)

__all__ = [
    "GRADIENT_VARIANCE_COLUMNS",
    "GradientNoiseResult",
    "GradientNoiseMonitor",
    "GradientVarianceResult",
    "NegativeEstimateWarning",
    "TwoBatchDesign",
    "TwoBatchResult",
    "gradient_noise",
    "gradient_variance",
    "inner_product_test",
    "norm_test",
    "orthogonality_test",
    "two_batch_estimate",
    "two_batch_estimate_from_callable",
]
