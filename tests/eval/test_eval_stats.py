"""Wilson interval: published values, an independent root-finding check, and edge cases."""
import math

import pytest
from scipy.optimize import brentq

from unidiff.eval.stats import wilson_interval


@pytest.mark.parametrize("k,n,low,high", [
    (8, 10, 0.4902, 0.9433),     # statsmodels proportion_confint(8, 10, method="wilson")
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),   # Wikipedia / Newcombe (1998) style example
])
def test_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("k,n", [(1, 3), (17, 40), (49, 50)])
def test_bounds_solve_the_score_equation(k, n):
    """The Wilson bounds are the p where |k/n - p| = z * sqrt(p (1 - p) / n)."""
    f = lambda p: abs(k / n - p) - 1.96 * math.sqrt(p * (1 - p) / n)
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(brentq(f, 1e-12, k / n), abs=1e-9)
    assert hi == pytest.approx(brentq(f, k / n, 1 - 1e-12), abs=1e-9)
    assert wilson_interval(k, n, z=2.576)[0] < lo  # 99 % is wider


@pytest.mark.parametrize("k,n", [(0, 0), (1, -1), (3, 2), (-1, 5), (0.5, 2), (1, 2.5)])
def test_bad_input(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)
