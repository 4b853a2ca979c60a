"""Gradient noise of a scikit-learn model, measured with lossvar.

Fits a logistic regression to scikit-learn's bundled breast-cancer data set
(no download) and computes, with numpy, each example's gradient of the log
loss at the fitted parameters. From them, lossvar gives the exact noise
statistics (||G||^2, tr Sigma and the simple noise scale B_simple). Then the
same quantities are estimated the way you would for a model whose
per-example gradients you cannot afford: from the mean gradients of random
batches at two sizes, through a ``batch_grad(indices)`` function, the form
that wraps a PyTorch module or a JAX function just as well.

Run it from anywhere: ``python docs/recipes/gradient_noise_numpy.py`` (needs
scikit-learn: ``pip install "lossvar[datasets]"``). It is included verbatim
in the documentation page "Your own model", so the page shows exactly the
code that runs.
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import lossvar

# 1. A fitted model on a fixed data set of N examples (features standardized).
X, y = load_breast_cancer(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)
model = LogisticRegression(C=1.0).fit(X, y)
w = np.append(model.coef_[0], model.intercept_[0])  # parameters: weights, then the intercept


def per_example_grads(Xb, yb):
    """Gradient of each example's log loss in (weights, intercept): (p_i - y_i) (x_i, 1)."""
    p = 1.0 / (1.0 + np.exp(-(Xb @ w[:-1] + w[-1])))  # P(y = 1 | x) at the fitted parameters
    return (p - yb)[:, None] * np.column_stack([Xb, np.ones(len(yb))])  # shape (B, 31)


# 2. The exact noise statistics from all N per-example gradients. The gradient is that of the
#    mean log loss, without scikit-learn's penalty |w|^2 / (2 C N) per example: a penalty adds the
#    same vector to every example's gradient, so it leaves Sigma unchanged, but it moves G (at the
#    fitted parameters, G plus the penalty's gradient is 0 to the solver's tolerance).
grads = per_example_grads(X, y)  # shape (N, 31)
exact = lossvar.GradientNoiseResult.from_grads(grads)  # Sigma divides by N (ddof=0)
penalty = np.append(w[:-1], 0.0) / (model.C * len(y))  # gradient of the penalty, per example
assert np.abs(exact.grad + penalty).max() < 1e-3  # the fit's optimality condition: our gradients match


# 3. The two-batch estimate, from the mean gradient of a batch of indices only.
def batch_grad(indices):
    """Mean gradient over the examples ``indices``: what one backward pass of a framework gives."""
    return per_example_grads(X[indices], y[indices]).mean(axis=0)


n = len(y)
est = lossvar.two_batch_estimate_from_callable(batch_grad, n=n, b_small=16, b_big=512,
                                               replicates=2000, rng=1)  # default: without replacement

print(f"{n} examples, {grads.shape[1]} parameters; Sigma divides by N")
print(f"{'':10}{'exact':>12}{'two-batch estimate':>22}{'(z)':>8}")
for name, true, value, se in [("||G||^2", exact.grad_norm2, est.grad_norm2, est.grad_norm2_se),
                              ("tr Sigma", exact.trace_cov, est.trace_cov, est.trace_cov_se),
                              ("B_simple", exact.b_simple, est.b_simple, est.b_simple_se)]:
    print(f"{name:10}{true:12.4g}{value:14.4g} +- {se:<8.2g}{(value - true) / se:6.2f}")

# Batches drawn without replacement need the finite-population factor (N - B)/(N - 1), which
# two_batch_estimate_from_callable applies; the plain 1/B formulas would estimate instead
print(f"without the factor: ||G||^2 - tr Sigma/(N - 1) = {exact.grad_norm2 - exact.trace_cov / (n - 1):.4g}, "
      f"tr Sigma N/(N - 1) = {exact.trace_cov * n / (n - 1):.4g}")
