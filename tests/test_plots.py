"""Every plot function draws on the Axes it is given, returns it, and never shows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import lossvar  # noqa: E402
from lossvar import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _curves():
    k = np.arange(1, 51)
    rows = [pd.DataFrame({"method": m, "step": k, "mean": s / k, "se": 0.1 * s / k,
                          "exact": s / k})
            for m, s in (("a", 1.0), ("b", 2.0))]
    t = pd.concat(rows, ignore_index=True)
    t["ci_low"], t["ci_high"] = t["mean"] - 1.96 * t.se, t["mean"] + 1.96 * t.se
    return t


def test_variance_plot_still_works():
    res = lossvar.loss_variance(np.random.default_rng(0).exponential(size=200), [1, 4, "full"],
                                replicates=500, rng=1)
    _, ax = plt.subplots()
    assert plots.variance_plot(res.table, ax=ax) is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_loss_curves_bands_and_exact():
    t = _curves()
    _, ax = plt.subplots()
    out = plots.loss_curves(t, x="step", y="mean", hue="method", se="se", exact=t, ax=ax,
                            logx=True, xlabel="step", ylabel="loss", title="T")
    assert out is ax
    assert len(ax.collections) >= 2  # one band per method
    assert ax.get_title() == "T" and ax.get_ylabel() == "loss" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "exact theory (dashed)" in labels and "a" in labels


def test_convergence_plot_reference_line():
    t = _curves()
    ax = plots.convergence_plot(t, hue="method", exact=t, reference=1.0)
    assert ax.get_xscale() == "log"
    assert "1 / k" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_spread_and_interval_plots():
    t = pd.DataFrame({"n": [10, 20, 10, 20], "noise_std": [0.5, 0.5, 1.0, 1.0],
                      "spread": [1.0, 0.5, 4.0, 2.0], "ci_low": [0.9, 0.4, 3.5, 1.8],
                      "ci_high": [1.1, 0.6, 4.5, 2.2], "exact": [1.0, 0.5, 4.0, 2.0]})
    _, ax = plt.subplots()
    assert plots.spread_plot(t, ax=ax) is ax
    ax2 = plots.interval_plot(t, x="n", y="spread", hue="noise_std", reference=1.0, logy=True)
    assert [tick.get_text() for tick in ax2.get_xticklabels()] == ["10", "20"]


def test_trajectories_plot():
    paths = pd.DataFrame({"optimizer": ["sgd"] * 3 + ["adam"] * 3, "step": [0, 1, 2] * 2,
                          "w0": [-1.0, -0.5, 0.0, -1.0, -0.6, -0.1],
                          "w1": [1.0, -0.5, 0.1, 1.0, 0.5, 0.0]})
    ax = plots.trajectories_plot(paths, lambda a, b: a**2 + 10 * b**2)
    assert len(ax.lines) == 3 and ax.get_xlabel().startswith("w0")
