"""Statistics of Monte Carlo estimates: standard errors and intervals, fits, and agreement
with exact theory.

- :mod:`lossvar.stats.intervals`: the z quantile (:func:`two_sided_z`), a mean's
  standard error and interval (:func:`mean_se`, :func:`mean_interval`), the
  intervals of a variance (:func:`variance_interval`) and of a ratio
  (:func:`fieller_interval`), the bootstrap (:func:`bootstrap`) and replicate
  planning (:func:`plan_replicates`);
- :mod:`lossvar.stats.fits`: the weighted line (:func:`line_fit`), a power law with
  the test of its exponent (:func:`power_law_fit`) and the 1/B scaling fit of a
  variance table (:func:`scaling_fit`);
- :mod:`lossvar.stats.agreement`: row tests against exact values and the calibrated
  verdicts built on them (:func:`agreement`, :func:`estimate_agreement`,
  :func:`study_verdicts`, :func:`holm`).

Every name is also here, ``lossvar.stats.NAME``.
"""

from .agreement import (
    MIN_DOF,
    RELIABLE_ESTIMATED_RATIO,
    RELIABLE_EXACT_RATIO,
    RELIABLE_MIN_REPLICATES,
    VARIANCE_TABLE_COLUMNS,
    AgreementResult,
    UnreliableIntervalWarning,
    agreement,
    estimate_agreement,
    holm,
    interval_reliable,
    study_verdicts,
    variance_comparison,
    variance_test,
    verdict_text,
)
from .fits import LineFitResult, PowerLawFitResult, ScalingFitResult, line_fit, power_law_fit, scaling_fit
from .intervals import (
    BOOTSTRAP_ELEMENTS,
    INTERVALS,
    bootstrap,
    fieller_interval,
    mean_interval,
    mean_se,
    plan_replicates,
    replicates_for_rel_se,
    two_sided_score,
    two_sided_z,
    variance_interval,
)

__all__ = [
    "BOOTSTRAP_ELEMENTS", "INTERVALS", "MIN_DOF", "RELIABLE_ESTIMATED_RATIO", "RELIABLE_EXACT_RATIO",
    "RELIABLE_MIN_REPLICATES", "VARIANCE_TABLE_COLUMNS", "AgreementResult", "LineFitResult",
    "PowerLawFitResult", "ScalingFitResult", "UnreliableIntervalWarning", "agreement",
    "bootstrap", "estimate_agreement", "fieller_interval", "holm", "interval_reliable", "line_fit",
    "mean_interval", "mean_se", "plan_replicates", "power_law_fit", "replicates_for_rel_se",
    "scaling_fit", "study_verdicts", "two_sided_score", "two_sided_z", "variance_comparison",
    "variance_interval", "variance_test", "verdict_text",
]
