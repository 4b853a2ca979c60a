"""The figure of a network's noise scale along its training, beside its critical batch size
(the ``critical_batch`` study's network case).

It draws the study's tables and returns the figure.
"""

from __future__ import annotations

from .draw import mc_points
from .style import palette, styled, subplots
from .text import caption, interval_words, number, percent

__all__ = ["noise_scale_figure"]


@styled
def noise_scale_figure(path, training, crit, *, confidence):
    """B_noise and B_simple against the excess loss along full-batch descent (exact at each
    point; table ``noise_path``), at the start and the end of SGD training with intervals
    across runs (``noise_in_training``), and B_crit with its interval (``critical_batch``),
    one panel per problem of ``training``."""
    labels = list(dict.fromkeys(training.problem))
    colors = palette(["B_noise", "B_simple", "B_crit"])
    level = percent(confidence)
    fig, axes = subplots(1, len(labels), width="column" if len(labels) == 1 else "full",
                         height=3.0, squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        p = path[path.problem == label].sort_values("excess_fraction", ascending=False)
        g = training[training.problem == label]
        c = crit[crit.problem == label].iloc[0]
        x = p.excess_fraction.to_numpy(float)
        for key, name, ls in (("b_noise", r"$B_{\rm noise}$", "-"),
                              ("b_simple", r"$B_{\rm simple}$", "--")):
            ax.plot(x, p[key], ls, marker="o", ms=3, lw=1.0, zorder=3,
                    color=colors["B_noise" if key == "b_noise" else "B_simple"],
                    label=f"{name} along full-batch descent (exact)")
        ax.axhspan(c.b_crit_ci_low, c.b_crit_ci_high, color=colors["B_crit"], alpha=0.18, lw=0,
                   zorder=1)
        ax.axhline(c.b_crit, color=colors["B_crit"], lw=1.0, zorder=2,
                   label=r"$B_{\rm crit}$ measured (steps against examples), " + f"{level} CI")
        end = g.iloc[-1]
        frac = end.excess_fraction
        for key, marker, name in (("b_noise", "D", r"$B_{\rm noise}$"),
                                  ("b_simple", "s", r"$B_{\rm simple}$")):
            col = colors["B_noise" if key == "b_noise" else "B_simple"]
            mc_points(ax, [frac], [end[key]], [end[f"{key}_ci_low"]], [end[f"{key}_ci_high"]],
                      color=col, marker=marker,
                      label=f"{name} at the end of {end.runs} SGD runs (B = {end.batch_size}), "
                            f"{level} CI")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("excess loss / excess loss at the start")
        ax.set_ylabel("batch size scale")
        ax.set_title(label, loc="left")
        ax.text(0.03, 0.97, r"$B_{\rm crit}$" + f" = {number(c.b_crit)} [{number(c.b_crit_ci_low)}, "
                f"{number(c.b_crit_ci_high)}]\n" + r"$B_{\rm noise}$" + f": {number(g.iloc[0].b_noise)}"
                f" at the start, {number(end.b_noise)} at the end",
                transform=ax.transAxes, ha="left", va="top", fontsize=6.5, linespacing=1.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncol=2, fontsize=6.5)
    caption(fig, (
        "McCandlish et al. (2018), section 3: the gradient noise scale grows as the loss falls. "
        "Lines: $B_{\\rm noise} = {\\rm tr}(H\\Sigma)/G^\\top H G$ and $B_{\\rm simple} = "
        "{\\rm tr}\\,\\Sigma/|G|^2$ at the points where full-batch descent (step $1/\\lambda_{\\max}$ "
        "at the start) first reaches each level of the excess loss, exact there (all per-example "
        "gradients, exact Hessian-vector products). Markers: their means at the last point of "
        "new SGD runs (independent draws) at the batch size nearest $B_{\\rm crit}$, with "
        f"{interval_words(confidence)} "
        "(Student t across the runs; empirical). Horizontal line and band: $B_{\\rm crit} = "
        "E_{\\min}/S_{\\min}$ from the hyperbola of steps against examples, with its bootstrap "
        "interval (empirical). Excess losses over a local minimum of the network."))
    return fig

