"""lossvar: measure the noise of stochastic optimization against exact theory.

The layers, lowest first: problems and data -> sampling -> engine -> stats and
theory -> results -> plots, CLI, studies. A lower layer never imports a higher
one.
"""

from . import datasets, engine, moments, optim, rates, sampling, schedules, sgd, stats, streams, theory  # noqa: E402,I001
from . import critical  # noqa: E402
# lossvar.plots costs little to import: matplotlib is imported inside its functions.
from . import plots  # noqa: E402
from ._build_revision import version as __version__  # noqa: E402
from .data import (  # noqa: E402
    Dataset,
    GaussianLinearPopulation,
    GaussianNoisePopulation,
    LogisticPopulation,
    Population,
)
from .problems import (  # noqa: E402
    MLP,
    LinearRegression,
    LogisticRegression,
    NoisyQuadratic,
    SoftmaxRegression,
)
from ._result import ConfidenceInterval  # noqa: E402
from .engine import Execution  # noqa: E402
from .noise import (  # noqa: E402
    GradientNoiseResult,
    GradientNoiseMonitor,
    NegativeEstimateWarning,
    TwoBatchDesign,
    TwoBatchResult,
    gradient_noise,
    gradient_variance,
    inner_product_test,
    norm_test,
    orthogonality_test,
    two_batch_estimate,
    two_batch_estimate_from_callable,
)
from .rates import RateFitResult, convergence_rate  # noqa: E402
from .schedules import RobbinsMonroResult, robbins_monro  # noqa: E402
from .sgd import DivergenceWarning, SGDResult, run_sgd  # noqa: E402
from .stats import (  # noqa: E402
    AgreementResult,
    ScalingFitResult,
    agreement,
    plan_replicates,
    scaling_fit,
)
from .variance import VarianceResult, loss_variance, variance_study  # noqa: E402

__all__ = [
    "AgreementResult", "agreement", "ConfidenceInterval", "DivergenceWarning", "Execution",
    "GradientNoiseResult", "GradientNoiseMonitor", "MLP", "NegativeEstimateWarning", "TwoBatchDesign",
    "TwoBatchResult", "gradient_noise",
    "gradient_variance", "inner_product_test", "norm_test", "orthogonality_test", "two_batch_estimate",
    "two_batch_estimate_from_callable", "RateFitResult", "SGDResult", "convergence_rate",
    "critical", "engine", "noise", "plan_replicates",
    "rates", "run_sgd", "sgd",
    "Dataset", "GaussianLinearPopulation", "GaussianNoisePopulation", "LinearRegression",
    "LogisticPopulation", "LogisticRegression", "NoisyQuadratic", "Population", "RobbinsMonroResult",
    "ScalingFitResult",
    "SoftmaxRegression", "VarianceResult", "__version__", "datasets", "loss_variance", "moments",
    "optim", "plots", "robbins_monro", "sampling", "scaling_fit", "schedules", "stats", "streams", "theory",
    "variance_study",
]
