"""Per-sample losses of a scikit-learn model, measured with lossvar.

Fits a logistic regression to scikit-learn's bundled breast-cancer data set
(no download), computes each example's log loss from ``predict_proba``, and
prints the Monte Carlo variance of the batch-mean loss for several batch
sizes beside the exact value, then the fit of Var(B) ~ B^a.

Run it from anywhere: ``python docs/recipes/sklearn_losses.py`` (needs
scikit-learn: ``pip install "lossvar[datasets]"``). It is included verbatim
in the documentation page "Your own model", so the page shows exactly the
code that runs.
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import lossvar

# 1. A fitted model on a fixed data set of N examples.
X, y = load_breast_cancer(return_X_y=True)
model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)

# 2. One loss per example: the log loss -log p(y_i | x_i). Clip as log_loss does.
proba = model.predict_proba(X)                       # shape (N, n_classes)
p_true = proba[np.arange(len(y)), y]                 # probability of the true class
losses = -np.log(np.clip(p_true, np.finfo(float).eps, 1.0))

# Their mean is scikit-learn's (full-batch) log loss.
assert np.isclose(losses.mean(), log_loss(y, proba))

# 3. The variance of the mean loss of a random batch, for each batch size B.
res = lossvar.loss_variance(losses, [1, 4, 16, 64, "full"], replicates=20_000, rng=1)

columns = ["batch_size", "estimator", "variance", "ci_low", "ci_high", "exact_variance", "kurtosis"]
print(f"{len(losses)} per-sample log losses, mean {losses.mean():.4f}")
print(res.table[columns].to_string(index=False))
print(lossvar.scaling_fit(res))
