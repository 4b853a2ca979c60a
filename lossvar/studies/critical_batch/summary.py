"""The critical_batch study's summary: what each part measured, against what."""

from __future__ import annotations

import numpy as np


def summary(args, t):
    """The summary of a run with options ``args`` from its tables ``t`` (by name)."""
    lines = [f"# critical_batch (seed {args.seed})", "",
             "McCandlish, Kaplan, Amodei et al. (2018), arXiv:1812.06162, tested on problems with "
             "known answers (docs/theory.md, section 10). Batches drawn with replacement in the "
             f"one-step and SGD parts. Intervals at {args.confidence:.0%}.", "",
             "## 1. One step from w = 0", ""]
    one, opt = t["one_step"], t["one_step_opt"]
    for label, g in one.groupby("problem", sort=False):
        kind = g.theory_kind.iloc[0]
        worst = float(g.z.abs().max())
        rel = float(((g.improvement - g.theory).abs() / g.theory.abs().max()).max())
        small = g[g.lr_over_eps_max <= 0.3]
        rel_small = float(((small.improvement - small.theory).abs() / g.theory.abs().max()).max())
        verdict = ("agree (|z| <= 4)" if worst <= 4 else "DISAGREE") if kind == "exact" else (
            "approximate: a second-order model of a non-quadratic loss, close for small steps "
            f"(eps <= 0.3 eps_max: max |difference| / max |theory| = {rel_small:.3g}), not for large")
        lines.append(f"- {label}: {kind} one-step curves vs Monte Carlo over {len(g)} (B, eps) points: "
                     f"max |z| = {worst:.2f}, max |difference| / max |theory| = {rel:.3g} -> {verdict}.")
        o = opt[opt.problem == label]
        est = o[o.eps_opt_estimable.astype(bool)]
        zo = ((est.eps_opt_mc - est.eps_opt) / est.eps_opt_mc_se).abs().max() if len(est) else np.nan
        missing = sorted(o.batch_size[~o.eps_opt_estimable.astype(bool)].tolist())
        lines.append(f"  eps_opt(B) = eps_max/(1 + B_noise/B) with eps_max = {o.eps_max.iloc[0]:.4g}, "
                     f"B_noise = {o.b_noise.iloc[0]:.4g}; Monte Carlo eps_opt vs theory: max |z| = "
                     f"{zo:.2f} over the {len(est)} of {len(o)} batch sizes where it is estimable"
                     + (f"; NOT estimable for B in {missing} (the fitted a eps - c eps^2 has no "
                        "maximum at a positive step, or its Fieller interval is unbounded or reaches "
                        "0: column eps_opt_estimable)" if missing else "") + ".")
        if kind != "exact":
            lines.append("  The second-order model is local (a Taylor expansion at w = 0): it need not "
                         "hold at steps near eps_max, where the fitted optimum is measured.")
    skipped = [c.problem for c in t["critical_batch"].itertuples() if c.problem not in set(one.problem)]
    if skipped:
        lines.append(f"- {', '.join(skipped)}: no one-step curves in this run "
                     "(--softmax-onestep-replicates 0).")
    targets = ", ".join(f"{c.target:g} for {c.problem}" for c in t["critical_batch"].itertuples())
    lines += ["", "## 2. Steps against examples", "",
              f"Target: excess loss as a fraction of its value at the start w0 (0; the network: a "
              f"Glorot draw): {targets}. Learning rate "
              f"per B: the best of the grid 1.5/lambda_max * {args.lr_factor:.4g}^-k (k of either "
              f"sign, lambda_max of H at w0) on {args.tune_replicates} tuning runs, the grid "
              "walked upward until a rate diverges or misses the target and downward until the "
              f"mean steps grow twice in a row; then {args.replicates} fresh runs measured. "
              "S(B) = S_min + E_min/B is the hyperbola (S/S_min - 1)(E/E_min - 1) = 1; fitted by "
              "weighted least squares, intervals by the bootstrap over runs "
              f"({args.bootstrap} resamples; the learning-rate choice is held fixed, so its "
              "uncertainty is not in them).", "",
              "| problem | S_min | E_min | B_crit = E_min/S_min | B_noise start / target | "
              "B_simple start / target | fit chi2 (dof), p |", "|---|---|---|---|---|---|---|"]
    for c in t["critical_batch"].itertuples():
        lines.append(
            f"| {c.problem} | {c.s_min:.3g} [{c.s_min_ci_low:.3g}, {c.s_min_ci_high:.3g}] | "
            f"{c.e_min:.3g} [{c.e_min_ci_low:.3g}, {c.e_min_ci_high:.3g}] | "
            f"{c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, {c.b_crit_ci_high:.3g}] | "
            f"{c.b_noise_start:.3g} / {c.b_noise_target:.3g} | {c.b_simple_start:.3g} / "
            f"{c.b_simple_target:.3g} | {c.chi2:.3g} ({c.dof}), {c.chi2_pvalue:.2g} |")
    lines.append("")
    steps = t["steps"]
    for label, g in steps.groupby("problem", sort=False):
        tuned = g[g.reached > 0]
        edge = sorted(tuned.batch_size[~tuned.lr_interior.astype(bool)].tolist())
        rates = ", ".join(f"{r.lr_over_base:.3g}" for r in tuned.itertuples())
        if edge:
            verdict = (f"NOT interior for B in {edge}: a rate beside it was not tried, so S there "
                       "is an upper bound for the best constant rate")
        else:
            verdict = "interior for every B (a worse, diverging or too slow rate on both sides)"
        lines.append(f"- {label}: best learning rate / (1.5/lambda_max) per B: {rates}; {verdict}.")
    lines.append("")
    path = t["noise_path"]
    for c in t["critical_batch"].itertuples():
        p = path[path.problem == c.problem]
        along = ", ".join(f"{r.b_noise:.3g} ({r.excess_fraction:.2g})" for r in p.itertuples())
        lo, hi = float(p.b_noise.min()), float(p.b_noise.max())
        inside = c.b_crit_ci_high >= lo and c.b_crit_ci_low <= hi
        lines.append(f"- {c.problem}: B_crit {c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, "
                     f"{c.b_crit_ci_high:.3g}]; B_noise along full-batch descent (excess fraction in "
                     f"brackets): {along}. B_crit {'lies within' if inside else 'lies OUTSIDE'} the "
                     "range B_noise sweeps during training. B_noise grows as G shrinks, by orders "
                     "of magnitude here, so the paper's B_crit ~ B_noise (its eq. 2.11, derived for "
                     "a noise scale that stays put) is an order-of-magnitude statement on these "
                     "problems, not a sharp test.")
    lines += ["", "## 3. Gradient noise E||g_B - G||^2 at w0", ""]
    gv = t["gradient_variance"]
    pos = gv[gv.exact > 0]
    worst = float(((pos["mean"] - pos.exact) / pos.mean_se).abs().max())
    lines.append(f"Monte Carlo vs exact tr(Sigma)/B (times (N - B)/(N - 1) without replacement): "
                 f"max |z| = {worst:.2f} over {len(pos)} rows; the full batch without replacement "
                 "is exactly 0.")
    for f in t["gradient_scaling"].itertuples():
        lines.append(f"- {f.problem}, {f.sampling}: exponent {f.exponent:.4f} [{f.ci_low:.4f}, "
                     f"{f.ci_high:.4f}] (1/B law: p = {f.pvalue:.3g}, {f.holm_pvalue:.3g} after Holm "
                     f"across the {len(t['gradient_scaling'])} fits).")
    if "noise_in_training" in t:
        lines += _network(args, t)
    return "\n".join(lines)


def _network(args, t):
    """The network's noise scale along its training, beside its B_crit."""
    lines = []
    for label, g in t["noise_in_training"].groupby("problem", sort=False):
        c = t["critical_batch"].set_index("problem").loc[label]
        path = t["noise_path"][t["noise_path"].problem == label]
        start, end = g.iloc[0], g.iloc[-1]
        lines += ["", f"## The noise scale along the training of the {label}", "",
                  "Empirical where marked: the loss is not convex, so S(B), the hyperbola and "
                  "B_crit are measured, not predicted; B_noise and B_simple are exact at any fixed "
                  "point (from all N per-example gradients and exact Hessian-vector products).", "",
                  "- along full-batch descent (exact at each point; excess fraction in brackets): "
                  "B_noise " + ", ".join(f"{r.b_noise:.3g} ({r.excess_fraction:.2g})"
                                         for r in path.itertuples())
                  + "; B_simple " + ", ".join(f"{r.b_simple:.3g}" for r in path.itertuples()) + ".",
                  f"- start of training (w0, every run; exact): B_noise {start.b_noise:.3g}, "
                  f"B_simple {start.b_simple:.3g}, loss {start.loss:.4g}.",
                  f"- end of training ({end.runs} SGD runs at B = {end.batch_size}, rate "
                  f"{end.lr:.3g}, {end.steps} steps; empirical, {args.confidence:.0%} Student t "
                  f"intervals across the runs): B_noise {end.b_noise:.3g} [{end.b_noise_ci_low:.3g}, "
                  f"{end.b_noise_ci_high:.3g}], B_simple {end.b_simple:.3g} "
                  f"[{end.b_simple_ci_low:.3g}, {end.b_simple_ci_high:.3g}], loss {end.loss:.4g} "
                  f"[{end.loss_ci_low:.4g}, {end.loss_ci_high:.4g}].",
                  f"- B_crit (empirical) {c.b_crit:.3g} [{c.b_crit_ci_low:.3g}, "
                  f"{c.b_crit_ci_high:.3g}]: the noise scale grows "
                  f"{end.b_noise / start.b_noise:.2g}-fold from the start to the end of training, "
                  "and B_crit, one number for the whole run, lies "
                  + ("between" if start.b_noise <= c.b_crit <= end.b_noise_ci_high else "outside")
                  + " B_noise at the start and at the end."]
    return lines

