"""The adaptive-batch tests of one batch: hand-computed values and their identities.

Checked to rounding (rtol 1e-12 for hand values; 1e-9 for identities over random
batches, whose conditioning varies).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lossvar import GradientNoiseResult, inner_product_test, norm_test, orthogonality_test

RTOL = 1e-12

# Three gradients in the plane: g = (2, 1).
HAND = np.array([[1.0, 1.0], [2.0, 0.0], [3.0, 2.0]])


# -- adaptive-batch tests --------------------------------------------------------------


def test_tests_hand_computed_b3():
    # g = (2, 1), ||g||^2 = 5. Deviations: squared norms 1, 1, 2 -> 4; theta^2 = 4 / (2 * 3 * 5) = 2/15.
    # g_i . g = 3, 4, 8 -> minus 5: -2, -1, 3 -> 14; theta^2 = 14 / (2 * 3 * 25) = 7/75.
    # Orthogonal parts (-0.2, 0.4), (0.4, -0.8), (-0.2, 0.4): 0.2 + 0.8 + 0.2 = 1.2; 1.2 / 30 = 1/25.
    assert norm_test(HAND) == pytest.approx(np.sqrt(2 / 15), rel=RTOL)
    assert inner_product_test(HAND) == pytest.approx(np.sqrt(7 / 75), rel=RTOL)
    assert orthogonality_test(HAND) == pytest.approx(0.2, rel=RTOL)


@pytest.mark.parametrize(
    ("grads", "norm", "inner", "ortho"),
    [
        ([[1.0, 0.0], [3.0, 0.0]], 0.5, 0.5, 0.0),  # all noise along g
        ([[2.0, 1.0], [2.0, -1.0]], 0.5, 0.0, 0.5),  # all noise orthogonal to g
    ],
)
def test_tests_hand_computed_b2(grads, norm, inner, ortho):
    # g = (2, 0), ||g||^2 = 4, B = 2: theta^2 = S / (1 * 2 * 4) with S = 2 in the direction of the noise.
    assert norm_test(grads) == pytest.approx(norm, rel=RTOL, abs=1e-15)
    assert inner_product_test(grads) == pytest.approx(inner, rel=RTOL, abs=1e-15)
    assert orthogonality_test(grads) == pytest.approx(ortho, rel=RTOL, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 6), st.integers(1, 4)),
              elements=st.floats(-10, 10, allow_subnormal=False)))
def test_tests_identities(grads):
    g = grads.mean(axis=0)
    if g @ g < 1e-6 * max(1.0, np.sum(grads * grads)):
        return  # near-zero mean: the tests are ill-conditioned there
    b = grads.shape[0]
    norm2 = norm_test(grads) ** 2
    # Noise splits into the part along g and the part orthogonal to it.
    assert norm2 == pytest.approx(inner_product_test(grads) ** 2 + orthogonality_test(grads) ** 2,
                                  rel=1e-9, abs=1e-12)
    # theta^2 is the batch's own simple noise scale (sample covariance) over B.
    assert norm2 == pytest.approx(GradientNoiseResult.from_grads(grads, ddof=1).b_simple / b, rel=1e-9,
                                  abs=1e-12)


@pytest.mark.parametrize("test", [norm_test, inner_product_test, orthogonality_test])
def test_tests_reject_bad_input(test):
    with pytest.raises(ValueError, match="`grads` must have shape \\(B, p\\) with B >= 2"):
        test([[1.0, 2.0]])
    with pytest.raises(ValueError, match="`grads` must have a nonzero mean"):
        test([[1.0, 2.0], [-1.0, -2.0]])
    with pytest.raises(ValueError, match="`grads` must be a 2-D array"):
        test([1.0, 2.0])
    with pytest.raises(ValueError, match="`grads` must be finite"):
        test([[1.0, np.nan], [1.0, 2.0]])

