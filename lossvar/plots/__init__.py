"""Figures: one style for the package, plot functions that only draw, and the figures of
the studies.

Every plot function takes a tidy table and an optional Axes and returns the
Axes; none shows or saves (seaborn's habit): the caller decides where a
figure goes. Statistics are computed elsewhere: intervals come from the
table's columns (``ci_low``, ``ci_high``) and exact curves from the table's
exact columns and :mod:`lossvar.theory`.

The style
---------
- sizes for print: :data:`COLUMN_WIDTH` (3.5 in, one journal column) and
  :data:`FULL_WIDTH` (7.2 in, a page), fonts of 7-8 pt, PNG at :data:`DPI`
  (300) plus SVG;
- one colour (and marker) per entity across all panels of a figure, from
  the colour-blind-safe Okabe-Ito palette: :func:`palette`, :func:`markers`;
- Monte Carlo as markers with interval bars (dense curves: a line with a
  band), the interval level stated in the legend or caption;
- exact theory always a thin dark line (:data:`EXACT`) drawn above the
  Monte Carlo markers;
- reference laws (such as ``s^2/B``) as a wide light-grey line beneath
  everything (:data:`REFERENCE`), so they stay visible where curves coincide.

The modules: :mod:`~lossvar.plots.style` (sizes, palette, rcParams),
:mod:`~lossvar.plots.text` (captions, legends, table panels, ticks, the words for
intervals and verdicts), :mod:`~lossvar.plots.draw` (the plot functions), and the
studies' figures by topic: :mod:`~lossvar.plots.batch` (the variance against B and
the critical batch size), :mod:`~lossvar.plots.incremental` (SGD against full-batch
descent), :mod:`~lossvar.plots.optimizers`, :mod:`~lossvar.plots.schedules` and
:mod:`~lossvar.plots.spread`. Every public name is also ``lossvar.plots.NAME``;
matplotlib is imported only when something is drawn.

Use it for your own figures::

    from lossvar import plots
    with plots.style():
        fig, ax = plots.subplots(width="column")
        plots.variance_plot(result.table, ax=ax, confidence=result.confidence)
        fig.savefig("variance.png")   # 300 dpi, tight bounding box
        fig.savefig("variance.svg")
"""

from .batch import gradient_noise_figure, one_step_figure, steps_examples_figure, variance_scaling_figure
from .draw import (
    band,
    convergence_plot,
    interval_plot,
    loss_curves,
    mc_points,
    ratio_plot,
    spread_plot,
    trajectories_plot,
    variance_plot,
)
from .incremental import advantage_sweep_figure, equal_computation_figure
from .noise_scale import noise_scale_figure
from .optimizers import (
    network_optimizers_figure,
    optimizer_convergence_figure,
    trajectories_figure,
    update_variance_figure,
)
from .schedules import network_schedules_figure, schedules_figure
from .spread import erm_spread_figure
from .style import (
    COLUMN_WIDTH,
    DPI,
    EXACT,
    EXTRA_COLORS,
    FULL_WIDTH,
    KNOWN,
    MONTE_CARLO,
    OKABE_ITO,
    RC,
    REFERENCE,
    figure,
    markers,
    palette,
    style,
    styled,
    subplots,
    use_style,
)
from .text import (
    caption,
    figure_legend,
    interval_text,
    interval_words,
    legend_order,
    log_ticks,
    minus,
    number,
    percent,
    sampling_label,
    table_panel,
    verdict_phrase,
    verdict_word,
)

__all__ = [
    "COLUMN_WIDTH", "DPI", "EXACT", "EXTRA_COLORS", "FULL_WIDTH", "KNOWN", "MONTE_CARLO", "OKABE_ITO",
    "RC", "REFERENCE", "advantage_sweep_figure", "band", "caption", "convergence_plot",
    "equal_computation_figure", "erm_spread_figure", "figure", "figure_legend",
    "gradient_noise_figure", "interval_plot", "interval_text", "interval_words", "legend_order",
    "log_ticks", "loss_curves", "markers", "mc_points", "minus", "network_optimizers_figure",
    "network_schedules_figure", "noise_scale_figure", "number", "one_step_figure",
    "optimizer_convergence_figure", "palette", "percent", "ratio_plot", "sampling_label",
    "schedules_figure", "spread_plot", "steps_examples_figure", "style", "styled", "subplots",
    "table_panel", "trajectories_figure", "trajectories_plot", "update_variance_figure",
    "use_style", "variance_plot", "variance_scaling_figure", "verdict_phrase", "verdict_word",
]
