"""The gradient noise of a JAX model, measured with lossvar through the callable form.

lossvar never needs to know JAX: it takes either the (N, p) per-example gradients
of a fixed data set, for the exact noise statistics (``GradientNoiseResult.from_grads``),
or a function ``batch_grad(indices) -> (p,)`` that returns the mean gradient of
any batch of examples, for the two-batch estimate with standard errors and
intervals (``two_batch_estimate_from_callable``). Both are a few lines of
``jax.vmap`` and ``jax.grad``.

The model: a 64-32-10 tanh network on scikit-learn's digits (1797 examples), in
float64, at a Glorot-uniform start. Its parameters are a list of (W, b) with W of
shape (fan_in, fan_out): flattened leaf by leaf, that is lossvar.MLP's layout, so
``lossvar.MLP((64, 32, 10))`` checks the gradients independently.

Run it from anywhere: ``python docs/recipes/jax_noise_scale.py`` (needs
``pip install jax`` and scikit-learn).
"""

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # float64, as lossvar
import jax.numpy as jnp  # noqa: E402

import lossvar  # noqa: E402

SIZES = (64, 32, 10)

data = lossvar.datasets.load("digits")
X, y = jnp.asarray(data.X), jnp.asarray(data.y)


def init(key):
    """Glorot-uniform weights, zero biases: a list of (W (fan_in, fan_out), b)."""
    params = []
    for fan_in, fan_out, k in zip(SIZES[:-1], SIZES[1:], jax.random.split(key, len(SIZES) - 1), strict=True):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        W = jax.random.uniform(k, (fan_in, fan_out), jnp.float64, minval=-limit, maxval=limit)
        params.append((W, jnp.zeros(fan_out)))
    return params


def example_loss(params, x, t):
    """Softmax cross-entropy of one example."""
    a = x
    for W, b in params[:-1]:
        a = jnp.tanh(a @ W + b)
    W, b = params[-1]
    f = a @ W + b
    return jax.nn.logsumexp(f) - f[t]


def mean_loss(params, Xb, yb):
    return jnp.mean(jax.vmap(example_loss, in_axes=(None, 0, 0))(params, Xb, yb))


def flat(tree, lead=()):
    """A pytree of arrays as one float64 numpy vector (or matrix with leading dims ``lead``)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(leaf).reshape(lead + (-1,)) for leaf in leaves], axis=-1)


per_example_grads = jax.jit(jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0)))
mean_grad = jax.jit(jax.grad(mean_loss))
params = init(jax.random.PRNGKey(0))

# 1. Exact: the N per-example gradients (here 1797 x 2410, 35 MB; in blocks for a larger N).
grads = flat(per_example_grads(params, X, y), lead=(data.n,))
exact = lossvar.GradientNoiseResult.from_grads(grads)
print("exact, from all per-example gradients:")
print(exact)

# 2. Estimated: batch means at two sizes, drawn without replacement, through the callable form.
est = lossvar.two_batch_estimate_from_callable(
    lambda idx: flat(mean_grad(params, X[idx], y[idx])), data.n, 16, 256, replicates=400, rng=0)
print("\ntwo-batch estimate from 400 pairs of batches of 16 and 256:")
print(est)

# lossvar's own numpy network on the same weights gives the same per-example gradients.
net = lossvar.MLP(SIZES)
w = net.flatten([(np.asarray(W), np.asarray(b)) for W, b in params])
assert np.allclose(net.grad(w, data.X, data.y), grads, rtol=0, atol=1e-12 * np.abs(grads).max())
